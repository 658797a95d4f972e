//! The store conformance suite, run on the in-memory store.

esrs_core::store_conformance_tests!(async { esrs_core::InMemoryStore::new() });
