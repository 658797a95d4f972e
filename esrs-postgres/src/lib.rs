//! PostgreSQL event store for esrs.
