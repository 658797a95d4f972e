//! Test support: a fresh, migrated store in a schema of its own, dropped when the test ends.

#![allow(dead_code, unreachable_pub)]

pub mod proxy;

use std::ops::Deref;
use std::time::Duration;

use esrs_core::store::{AppendOutcome, AppendRequest, EventStream, Snapshot, SnapshotKey};
use esrs_core::{EventStore, IdempotencyKey, Position, StreamId, Version};
use esrs_postgres::sqlx::PgPool;
use esrs_postgres::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use esrs_postgres::{PgStore, PgStoreOptions};

/// The test database: `DATABASE_URL`, else the local server.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

pub fn connect_options() -> PgConnectOptions {
    database_url().parse().expect("DATABASE_URL parses")
}

/// A small pool on the test database.
pub async fn pool(max_connections: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(connect_options())
        .await
        .expect("the test database is reachable (set DATABASE_URL)")
}

/// The partitions of the events table of the tests' stores: `ESRS_TEST_PARTITIONS`, else 1
/// (one plain table). The test script runs the guarantee tests once more with 8.
pub fn test_partitions() -> u16 {
    std::env::var("ESRS_TEST_PARTITIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// A schema name no other test uses.
pub fn unique_schema() -> String {
    format!(
        "esrs_t_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    )
}

/// A migrated store in a fresh schema, with the default options.
pub async fn fresh_store() -> TestStore {
    fresh_store_with(|o| o).await
}

/// A migrated store in a fresh schema, with options adjusted by `configure`.
pub async fn fresh_store_with(
    configure: impl FnOnce(PgStoreOptions) -> PgStoreOptions,
) -> TestStore {
    let schema = unique_schema();
    // Other tests of the cluster hold the global-log horizon back for moments; reads wait
    // longer for them than the default so that their results are complete.
    let store = configure(
        PgStoreOptions::new()
            .partitions(test_partitions())
            .schema(&schema)
            .settle_time(Duration::from_secs(5)),
    )
    .build(pool(8).await)
    .expect("valid options");
    store.migrate().await.expect("migrations apply");
    TestStore { store }
}

/// The plan PostgreSQL chooses for `sql`, one line per plan node, joined.
pub async fn explain(store: &PgStore, sql: &str) -> String {
    use esrs_postgres::sqlx::Row;
    esrs_postgres::sqlx::query(&format!("EXPLAIN {sql}"))
        .fetch_all(store.pool())
        .await
        .expect("EXPLAIN runs")
        .iter()
        .map(|row| row.get::<String, _>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A [`PgStore`] whose schema is dropped when it is.
#[derive(Debug)]
pub struct TestStore {
    pub store: PgStore,
}

impl Deref for TestStore {
    type Target = PgStore;
    fn deref(&self) -> &PgStore {
        &self.store
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        let schema = self.store.schema();
        clean_up(format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
    }
}

/// Runs `sql` on a connection of its own, ignoring failures: the clean-up of a test's
/// schema or role, from a `Drop` that runs inside the test's runtime (so it gets a thread
/// and runtime of its own).
///
/// The test's runtime is blocked meanwhile, so a transaction of the test still open then
/// cannot end until the clean-up does: its locks are waited for [`CLEAN_UP_LOCK_WAIT`] at
/// most, after which the schema is left behind rather than the test hanging.
pub fn clean_up(sql: String) {
    let _ = run_apart(format!(
        "SET lock_timeout = '{}ms'; {sql}",
        CLEAN_UP_LOCK_WAIT.as_millis()
    ));
}

/// How long a clean-up waits for the locks it needs.
pub const CLEAN_UP_LOCK_WAIT: Duration = Duration::from_secs(20);

/// Runs `sql` (statements separated by `;`, in one implicit transaction) on a connection of
/// its own, from a thread and runtime of its own, blocking the calling thread until it is
/// done: the test's runtime runs nothing meanwhile.
pub fn run_apart(sql: String) -> Result<(), String> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            use esrs_postgres::sqlx::{Connection, Executor};
            let mut conn = esrs_postgres::sqlx::PgConnection::connect_with(&connect_options())
                .await
                .map_err(|e| e.to_string())?;
            let result = conn
                .execute(&*sql)
                .await
                .map(drop)
                .map_err(|e| e.to_string());
            let _ = conn.close().await;
            result
        })
    })
    .join()
    .map_err(|_| "the thread panicked".to_owned())?
}

/// Whether `table` can be locked exclusively at once, checked while the test's runtime runs
/// nothing: `false` if a transaction of the test (or another) still holds a lock on it, which
/// only that transaction's end would release.
pub fn lockable_now(table: &str) -> bool {
    run_apart(format!(
        "SET lock_timeout = '1s'; BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE; ROLLBACK"
    ))
    .is_ok()
}

impl EventStore for TestStore {
    fn append(
        &self,
        request: AppendRequest,
    ) -> impl Future<Output = esrs_core::Result<AppendOutcome>> + Send {
        self.store.append(request)
    }
    fn read_stream(&self, stream: &StreamId, from: Version, to: Version) -> EventStream<'_> {
        self.store.read_stream(stream, from, to)
    }
    fn read_all(&self, after: Position) -> EventStream<'_> {
        self.store.read_all(after)
    }
    fn read_log(
        &self,
        after: Position,
        filter: &esrs_core::store::LogFilter,
    ) -> esrs_core::store::LogStream<'_> {
        self.store.read_log(after, filter)
    }
    fn read_for_fold(
        &self,
        stream: &StreamId,
        from: Version,
        to: Version,
        snapshot: Option<esrs_core::store::SnapshotKey>,
    ) -> esrs_core::store::FoldStream<'_> {
        self.store.read_for_fold(stream, from, to, snapshot)
    }
    fn save_snapshot(
        &self,
        snapshot: Snapshot,
    ) -> impl Future<Output = esrs_core::Result<()>> + Send {
        self.store.save_snapshot(snapshot)
    }
    fn load_snapshot(
        &self,
        stream: &StreamId,
        key: SnapshotKey,
    ) -> impl Future<Output = esrs_core::Result<Option<Snapshot>>> + Send {
        self.store.load_snapshot(stream, key)
    }
    fn delete_snapshots(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = esrs_core::Result<()>> + Send {
        self.store.delete_snapshots(stream)
    }
    fn find_idempotency_key(
        &self,
        key: &IdempotencyKey,
    ) -> impl Future<Output = esrs_core::Result<Option<esrs_core::store::IdempotencyRecord>>> + Send
    {
        self.store.find_idempotency_key(key)
    }
    fn stream_version(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = esrs_core::Result<Version>> + Send {
        self.store.stream_version(stream)
    }
    fn wait_for_events(
        &self,
        after: Position,
        timeout: Duration,
    ) -> impl Future<Output = esrs_core::Result<()>> + Send {
        self.store.wait_for_events(after, timeout)
    }
    fn head_position(&self) -> impl Future<Output = esrs_core::Result<Option<Position>>> + Send {
        EventStore::head_position(&self.store)
    }
}
