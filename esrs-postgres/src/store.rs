//! [`PgStore`] and its [`EventStore`] implementation, whose operations live in modules
//! named for them:
//!
//! - `connection`: the one way to the database (leases, parking, the listener's
//!   connection) and the stream versions seen through it;
//! - `append`, `idempotency`, `snapshot`, `read` (`stream`, `log`, `decode`), `notify`:
//!   the operations of the trait, and `checkpoint`, `lock` those of projections;
//! - `options`: [`PgStoreOptions`]; `sql`: the statements (in `sql/`) and the columns each
//!   one's decoder reads;
//! - `slow`: the rate-limited warning of slow appends; `health`: [`PgStore::sample_health`],
//!   the gauges of the store's health.

/// A debug span of a database operation of `store`, named `$name`, with the attributes of
/// the OpenTelemetry database conventions (`db.collection.name` is the table, `db.namespace`
/// the schema; so that `tracing-opentelemetry` exports it as a
/// database client span), then the given fields. Its duration is the operation's.
macro_rules! db_span {
    ($name:literal, $store:expr, $operation:literal, $collection:literal, $($fields:tt)*) => {
        tracing::debug_span!(
            $name,
            otel.kind = "client",
            db.system.name = "postgresql",
            db.operation.name = $operation,
            db.collection.name = $collection,
            db.namespace = $store.schema(),
            $($fields)*
        )
    };
}

mod append;
mod checkpoint;
mod connection;
mod health;
mod idempotency;
mod lock;
mod notify;
mod options;
mod read;
mod slow;
mod snapshot;
mod sql;

pub use health::PgHealth;
pub use lock::ProjectionLock;
pub use options::{
    DEFAULT_SCHEMA, DEFAULT_SLOW_APPEND_THRESHOLD, MAX_PARTITIONS, MAX_SCHEMA_LEN, PgStoreOptions,
};

use std::sync::Arc;
use std::time::Duration;

use esrs_core::store::{
    AppendOutcome, AppendRequest, EventStream, LogEntry, LogFilter, LogStream, Snapshot,
    SnapshotKey,
};
use esrs_core::{EventStore, IdempotencyKey, Position, StreamId, Version};
use futures_util::TryStreamExt;
use sqlx::postgres::PgPool;
use tracing::Instrument;

use crate::error::Result;
use sql::Sql;

/// A PostgreSQL event store.
///
/// `PgStore` keeps every guarantee of [`EventStore`] and passes the same conformance suite as
/// [`InMemoryStore`](esrs_core::InMemoryStore):
///
/// - **One round trip per append**, whatever the batch size: the events travel as arrays in
///   one statement. An append that expects a version and has no idempotency key is one
///   plain `INSERT`, whose expected-version check is the primary key and the presence of
///   the expected version (not looked up again when the store has just read or written
///   it: a stream never loses an event); other appends call the schema's `append`
///   function, which checks the idempotency key and the expected version and inserts the
///   batch in the same transaction.
/// - **No gap, no duplicate**: the primary key `(stream_id, version)` makes two writers of the
///   same version collide; the loser gets [`Error::Conflict`](esrs_core::Error::Conflict)
///   (with [`ExpectedVersion::Any`](esrs_core::ExpectedVersion::Any) the store retries for
///   it). Stream positions are never written with `ON CONFLICT DO NOTHING`.
/// - **Idempotency keys** are recorded in the append's transaction; a concurrent or later
///   repeat gets the original outcome.
/// - **Append-only history**: triggers refuse `UPDATE`, `DELETE` and `TRUNCATE` of events.
/// - **Gap-free global reads**: [`read_all`](EventStore::read_all) returns events in
///   `(transaction id, sequence)` order and only from transactions older than the oldest
///   one still running, so a reader never skips an event that commits late. The price: a
///   transaction that stays open (anywhere in the cluster, once it has written) holds back
///   global readers until it ends. Keep write transactions short.
/// - **Notifications**: appends notify the channel `<schema>_events` after they commit, at
///   most once per [`notify_interval`](PgStoreOptions::notify_interval) (5 ms) per store,
///   and [`wait_for_events`](EventStore::wait_for_events) wakes within milliseconds; it
///   polls when notifications are off or the listening connection is down.
///
/// - **No pool ping between operations**: a connection whose operation completed is kept
///   for the store's next one instead of going back to sqlx's pool, which would check it
///   with a round trip (see [`PgStoreOptions::reuse_connections`]).
///
/// Cloning is cheap; clones share the pool, the kept connections and the notification
/// listener.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    conns: connection::Connections,
    schema: String,
    max_payload_bytes: usize,
    idempotency_retention: Duration,
    notify: bool,
    notify_interval: Duration,
    poll_interval: Duration,
    page_size: u32,
    max_page_size: u32,
    settle_time: Duration,
    sql: Sql,
    notifier: notify::Notifier,
    seen: connection::Seen,
    slow_appends: slow::SlowAppends,
    partitions: u16,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("schema", &self.inner.schema)
            .field("max_payload_bytes", &self.inner.max_payload_bytes)
            .field("idempotency_retention", &self.inner.idempotency_retention)
            .field("notify", &self.inner.notify)
            .field("notify_interval", &self.inner.notify_interval)
            .field("poll_interval", &self.inner.poll_interval)
            .field("page_size", &self.inner.page_size)
            .field("max_page_size", &self.inner.max_page_size)
            .field("settle_time", &self.inner.settle_time)
            .field("partitions", &self.inner.partitions)
            .field(
                "slow_append_threshold",
                &self.inner.slow_appends.threshold(),
            )
            .field("pool", self.inner.conns.pool())
            .field("connections", &self.inner.conns)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to `url` with the default [`PgStoreOptions`].
    pub async fn connect(url: &str) -> Result<Self> {
        PgStoreOptions::new().connect(url).await
    }

    /// A store with the default [`PgStoreOptions`] on an existing pool.
    pub fn from_pool(pool: PgPool) -> Self {
        // The default schema name is valid.
        PgStoreOptions::new().build_unchecked(pool)
    }

    /// The pool the store uses.
    pub fn pool(&self) -> &PgPool {
        self.inner.conns.pool()
    }

    /// The store's connections, through which every database access of the crate goes
    /// (see [`PgStoreOptions::reuse_connections`]).
    pub(crate) fn connections(&self) -> &connection::Connections {
        &self.inner.conns
    }

    /// The schema holding the store's tables.
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// The number of partitions of the events table the store was built for (1: one plain
    /// table); see [`PgStoreOptions::partitions`].
    pub fn partitions(&self) -> u16 {
        self.inner.partitions
    }

    /// The largest event payload accepted, in bytes.
    pub fn max_payload_bytes(&self) -> usize {
        self.inner.max_payload_bytes
    }

    /// How long idempotency keys are remembered; see
    /// [`PgStoreOptions::idempotency_retention`].
    pub fn idempotency_retention(&self) -> Duration {
        self.inner.idempotency_retention
    }

    /// The channel appends notify: `<schema>_events`.
    pub fn notification_channel(&self) -> String {
        format!("{}_events", self.inner.schema)
    }

    fn sql(&self) -> &Sql {
        &self.inner.sql
    }
}

impl EventStore for PgStore {
    async fn append(&self, request: AppendRequest) -> esrs_core::Result<AppendOutcome> {
        append::append(self, request).await
    }

    fn read_stream(&self, stream: &StreamId, from: Version, to: Version) -> EventStream<'_> {
        read::read_stream(self, stream, from, to)
    }

    fn read_all(&self, after: Position) -> EventStream<'_> {
        read::read_all(self, after)
    }

    fn read_log(&self, after: Position, filter: &LogFilter) -> LogStream<'_> {
        if filter.is_all() {
            return Box::pin(read::read_all(self, after).map_ok(LogEntry::Event));
        }
        read::read_log(self, after, filter)
    }

    fn read_for_fold(
        &self,
        stream: &StreamId,
        from: Version,
        to: Version,
        snapshot: Option<SnapshotKey>,
    ) -> esrs_core::store::FoldStream<'_> {
        read::read_for_fold(self, stream, from, to, snapshot)
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> esrs_core::Result<()> {
        let span = db_span!("esrs.pg.save_snapshot", self, "save_snapshot", "snapshots", stream = %snapshot.stream, version = snapshot.version);
        snapshot::save_snapshot(self, snapshot)
            .instrument(span)
            .await
    }

    async fn load_snapshot(
        &self,
        stream: &StreamId,
        key: SnapshotKey,
    ) -> esrs_core::Result<Option<Snapshot>> {
        let span =
            db_span!("esrs.pg.load_snapshot", self, "load_snapshot", "snapshots", stream = %stream);
        snapshot::load_snapshot(self, stream, key)
            .instrument(span)
            .await
    }

    async fn delete_snapshots(&self, stream: &StreamId) -> esrs_core::Result<()> {
        snapshot::delete_snapshots(self, stream).await
    }

    async fn find_idempotency_key(
        &self,
        key: &IdempotencyKey,
    ) -> esrs_core::Result<Option<esrs_core::store::IdempotencyRecord>> {
        let span = db_span!(
            "esrs.pg.find_idempotency_key",
            self,
            "find_idempotency_key",
            "idempotency_keys",
            key = key.as_str()
        );
        idempotency::find_idempotency_key(self, key)
            .instrument(span)
            .await
    }

    async fn stream_version(&self, stream: &StreamId) -> esrs_core::Result<Version> {
        let span =
            db_span!("esrs.pg.stream_version", self, "stream_version", "events", stream = %stream);
        read::stream_version(self, stream).instrument(span).await
    }

    async fn wait_for_events(&self, after: Position, timeout: Duration) -> esrs_core::Result<()> {
        notify::wait_for_events(self, after, timeout).await
    }

    async fn head_position(&self) -> esrs_core::Result<Option<Position>> {
        PgStore::head_position(self).await
    }
}
