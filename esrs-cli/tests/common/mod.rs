//! What the `esrs` tests share: stores in schemas of their own, the binary, and throwaway
//! PostgreSQL clusters.

#![allow(dead_code, unreachable_pub)]

pub mod cluster;

use std::process::{Command, Output};

use esrs_core::store::{AppendRequest, NewEvent};
use esrs_core::{EventStore, ExpectedVersion, Metadata, StreamId};
use esrs_postgres::{PgStore, PgStoreOptions, sqlx};

/// The shared test database: `DATABASE_URL`, else the server on 127.0.0.1:5432.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A schema name unique to this call.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// A migrated store in a new schema of the database at `url`.
pub async fn store_at(url: &str, schema: &str) -> PgStore {
    // Other tests of the cluster hold the global-log horizon back for moments; reads wait
    // longer for them than the default, so that a catch-up right after an append sees it.
    let store = PgStoreOptions::new()
        .schema(schema)
        .settle_time(std::time::Duration::from_secs(5))
        .connect(url)
        .await
        .expect("the test database is reachable");
    store.migrate().await.expect("migrations apply");
    store
}

/// Drops `schema` from the database of `store`.
pub async fn drop_schema(store: &PgStore, schema: &str) {
    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(store.pool())
        .await;
}

/// Runs `esrs` with `args` against the database at `url`.
pub fn esrs_at(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_esrs"))
        .args(args)
        .env("DATABASE_URL", url)
        .env_remove("RUST_LOG")
        .output()
        .expect("the esrs binary runs")
}

/// Runs `esrs` with `args` against the shared test database.
pub fn esrs(args: &[&str]) -> Output {
    esrs_at(&database_url(), args)
}

/// The standard output of a run that must succeed.
pub fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "esrs failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("UTF-8 output")
}

/// Appends `count` events named `name` to `stream`, one append of them all, with metadata.
pub async fn append(store: &PgStore, stream: &str, name: &'static str, count: usize) {
    let events = (0..count)
        .map(|i| {
            let payload =
                serde_json::value::to_raw_value(&serde_json::json!({ "n": i, "note": "a\nb" }))
                    .unwrap();
            NewEvent::new(name, 1, payload)
        })
        .collect();
    store
        .append(
            AppendRequest::new(StreamId::new(stream).unwrap(), ExpectedVersion::Any, events)
                .metadata(Metadata::new().with_actor("tester")),
        )
        .await
        .unwrap();
}
