//! Snapshots on PostgreSQL beyond the conformance suite: the migration to one snapshot per
//! key keeps the snapshots saved before it, and concurrent saves of two keys keep both.

mod common;

use common::TestStore;
use esrs_core::store::{Snapshot, SnapshotKey};
use esrs_core::{EventStore, StreamId};
use esrs_postgres::PgStoreOptions;
use esrs_postgres::sqlx;

/// A schema at version 1 (one snapshot row per stream) with a snapshot in it, then
/// `migrate`: the row survives and loads, and the stream takes a second key beside it.
#[tokio::test]
async fn snapshots_saved_before_the_per_key_migration_survive_it() {
    let schema = common::unique_schema();
    let store = PgStoreOptions::new()
        .schema(&schema)
        .build(common::pool(2).await)
        .expect("store");
    let store = TestStore { store };
    let initial = include_str!("../src/migrations/0001_initial.sql").replace("{schema}", &schema);
    sqlx::raw_sql(&format!(
        "CREATE SCHEMA {schema};
         CREATE TABLE {schema}.migrations (
             version integer PRIMARY KEY,
             description text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );
         {initial};
         INSERT INTO {schema}.migrations (version, description) VALUES (1, 'initial');
         INSERT INTO {schema}.snapshots (stream_id, version, snapshot_version, fingerprint, payload)
         VALUES ('cart-1', 4, 1, 10, '{{\"items\":4}}');"
    ))
    .execute(store.pool())
    .await
    .expect("a version-1 schema with a snapshot");

    store.migrate().await.expect("migrations apply");

    let stream = StreamId::new("cart-1").expect("stream id");
    let old = SnapshotKey::new(1, 10);
    let new = SnapshotKey::new(1, 11);
    let loaded = store
        .load_snapshot(&stream, old)
        .await
        .expect("load")
        .expect("the snapshot saved before the migration");
    assert_eq!(
        (loaded.version, loaded.payload.get()),
        (4, r#"{"items":4}"#)
    );

    let payload = serde_json::value::to_raw_value(&serde_json::json!({ "items": 5 })).unwrap();
    store
        .save_snapshot(Snapshot::new(stream.clone(), 5, new, payload))
        .await
        .expect("save");
    assert!(
        store
            .load_snapshot(&stream, old)
            .await
            .expect("load")
            .is_some()
    );
    assert_eq!(
        store
            .load_snapshot(&stream, new)
            .await
            .expect("load")
            .map(|s| s.version),
        Some(5)
    );
}

/// Two versions of a program saving snapshots of the same stream at once, many times: each
/// always finds its own afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_saves_of_two_keys_keep_both() {
    let store = std::sync::Arc::new(common::fresh_store().await);
    let stream = StreamId::new("cart-2").expect("stream id");
    let keys = [SnapshotKey::new(1, 0xa), SnapshotKey::new(1, 0xb)];
    let writers = keys.map(|key| {
        let store = store.clone();
        let stream = stream.clone();
        tokio::spawn(async move {
            for version in 1..=50u64 {
                let payload = serde_json::value::to_raw_value(&version).unwrap();
                store
                    .save_snapshot(Snapshot::new(stream.clone(), version, key, payload))
                    .await
                    .expect("save");
            }
        })
    });
    for writer in writers {
        writer.await.expect("writer");
    }
    for key in keys {
        let loaded = store.load_snapshot(&stream, key).await.expect("load");
        assert_eq!(loaded.map(|s| s.version), Some(50), "key {key:?}");
    }
}
