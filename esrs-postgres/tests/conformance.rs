//! The store conformance suite, run on PostgreSQL, each test in a schema of its own.

mod common;

esrs_core::store_conformance_tests!(common::fresh_store());

/// 16 writers with reload-and-retry over 100 streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_one_hundred_streams() {
    esrs_core::conformance::concurrent_writers_many_streams(common::fresh_store().await, 100, 20)
        .await;
}
