//! Every public future of both stores is `Send`, so it can be awaited inside
//! `tokio::spawn` or an `async_trait` method. The checks are made by the compiler: the
//! futures are built and never awaited, and this file does not build if one is not `Send`.

use std::time::Duration;

use esrs_core::store::{AppendRequest, Snapshot, SnapshotKey};
use esrs_core::{EventStore, IdempotencyKey, InMemoryStore, Position, Projection, StreamId};
use esrs_postgres::sqlx::postgres::PgConnection;
use esrs_postgres::{PgStore, PgStoreOptions, PgTransaction, ProjectionLock};

fn assert_send<T: Send>(_: T) {}

/// The futures of the [`EventStore`] trait, for any store.
fn event_store_futures<S: EventStore>(
    store: &S,
    stream: &StreamId,
    key: &IdempotencyKey,
    request: AppendRequest,
    snapshot: Snapshot,
    snapshot_key: SnapshotKey,
) {
    assert_send(store.append(request));
    assert_send(store.read_stream(stream, 1, u64::MAX));
    assert_send(store.read_all(Position::START));
    assert_send(store.read_for_fold(stream, 1, u64::MAX, None));
    assert_send(store.read_for_fold(stream, 1, u64::MAX, Some(snapshot_key)));
    assert_send(store.save_snapshot(snapshot));
    assert_send(store.load_snapshot(stream, snapshot_key));
    assert_send(store.find_idempotency_key(key));
    assert_send(store.stream_version(stream));
    assert_send(store.head_position());
    assert_send(store.wait_for_events(Position::START, Duration::ZERO));
}

/// The trait's futures of the in-memory store, named by its concrete type.
#[allow(dead_code)]
fn in_memory_store_futures(
    store: &InMemoryStore,
    stream: &StreamId,
    key: &IdempotencyKey,
    request: AppendRequest,
    snapshot: Snapshot,
    snapshot_key: SnapshotKey,
) {
    event_store_futures(store, stream, key, request, snapshot, snapshot_key);
}

/// The trait's futures of the PostgreSQL store and its inherent ones.
#[allow(dead_code, clippy::too_many_arguments)]
fn pg_store_futures<P: Projection<PgTransaction>>(
    store: &PgStore,
    conn: &mut PgConnection,
    lock: ProjectionLock,
    projection: &mut P,
    stream: &StreamId,
    key: &IdempotencyKey,
    request: AppendRequest,
    snapshot: Snapshot,
    snapshot_key: SnapshotKey,
) {
    event_store_futures(store, stream, key, request.clone(), snapshot, snapshot_key);
    assert_send(PgStore::connect("postgres://localhost/app"));
    assert_send(PgStoreOptions::new().connect("postgres://localhost/app"));
    assert_send(
        PgStoreOptions::new().connect_with("postgres://localhost/app".parse().expect("valid URL")),
    );
    assert_send(store.migrate());
    assert_send(store.schema_version());
    assert_send(store.grant_app_role("app"));
    assert_send(store.sweep_idempotency_keys());
    assert_send(store.try_lock_projection("p"));
    assert_send(PgStore::head_position(store));
    assert_send(lock.release());
    assert_send(store.load_checkpoint("p"));
    assert_send(store.append_inline(request.clone(), projection));
    assert_send(store.append_in(conn, request));
}

#[allow(dead_code)]
fn pg_connection_futures(store: &PgStore, conn: &mut PgConnection) {
    assert_send(store.load_checkpoint_in(conn, "p"));
}

#[allow(dead_code)]
fn pg_checkpoint_move_future(store: &PgStore, conn: &mut PgConnection) {
    assert_send(store.move_checkpoint_in(conn, "p", Position::START, Position::START));
}

/// The checks above are made when this file compiles; this test only makes the run of the
/// file report it.
#[test]
fn every_public_future_of_both_stores_is_send() {
    let _ = in_memory_store_futures;
    let _ = pg_store_futures::<NoProjection>;
    let _ = pg_connection_futures;
    let _ = pg_checkpoint_move_future;
}

/// A projection type to name `append_inline`'s future with.
struct NoProjection;

impl Projection<PgTransaction> for NoProjection {
    type Event = serde_json::Value;

    fn name(&self) -> &str {
        "none"
    }

    async fn handle(
        &mut self,
        _: &mut PgTransaction,
        _: serde_json::Value,
        _: &esrs_core::RecordedEvent,
    ) -> Result<(), esrs_core::BoxError> {
        Ok(())
    }
}
