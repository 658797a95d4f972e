//! [`PgStoreOptions`]: how a [`PgStore`] is configured and built.

use std::sync::Arc;
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};

use super::{Inner, PgStore, Sql, connection, notify};
use crate::error::{Error, Result};

/// The schema esrs uses when none is configured.
pub const DEFAULT_SCHEMA: &str = "esrs";

/// The longest schema name accepted, in bytes: PostgreSQL's identifier limit (63) minus the
/// `_events` suffix of the notification channel.
pub const MAX_SCHEMA_LEN: usize = 56;

/// How many rows the first query of a read of the global log returns at most; the read
/// pages through longer results.
const DEFAULT_PAGE_SIZE: u32 = 5000;

/// How many rows a page of a read of the global log grows to at most.
const DEFAULT_MAX_PAGE_SIZE: u32 = 80_000;

/// How long a read of the global log waits for older open transactions.
const DEFAULT_SETTLE_TIME: Duration = Duration::from_secs(1);

/// How often a waiting reader checks the log when no notification arrives.
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// The shortest time between two notifications of one store.
const DEFAULT_NOTIFY_INTERVAL: Duration = Duration::from_millis(5);

/// The append time above which a store logs a warning: 50 ms, the sign of I/O pressure on
/// an SSD.
pub const DEFAULT_SLOW_APPEND_THRESHOLD: Duration = Duration::from_millis(50);

/// How to build a [`PgStore`]: schema name, payload limit, notifications, paging.
///
/// ```no_run
/// # async fn demo() -> Result<(), esrs_postgres::Error> {
/// use esrs_postgres::PgStoreOptions;
///
/// let store = PgStoreOptions::new()
///     .schema("billing_events")
///     .max_payload_bytes(64 * 1024)
///     .connect("postgres://postgres@localhost/app")
///     .await?;
/// store.migrate().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PgStoreOptions {
    schema: String,
    max_payload_bytes: usize,
    idempotency_retention: Duration,
    notify: bool,
    notify_interval: Duration,
    poll_interval: Duration,
    page_size: u32,
    max_page_size: u32,
    settle_time: Duration,
    max_connections: u32,
    acquire_timeout: Duration,
    reuse_connections: bool,
    slow_append_threshold: Duration,
    partitions: u16,
}

/// The most partitions [`PgStoreOptions::partitions`] takes.
pub const MAX_PARTITIONS: u16 = 1024;

impl Default for PgStoreOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl PgStoreOptions {
    /// The defaults: schema `esrs`, payloads up to
    /// [`DEFAULT_MAX_PAYLOAD_BYTES`](esrs_core::store::DEFAULT_MAX_PAYLOAD_BYTES), notifications on,
    /// polling every 500 ms when no notification arrives, pages of 5,000 rows, a warning for
    /// appends slower than 50 ms, and (for [`connect`](Self::connect)) a pool of 10
    /// connections.
    pub fn new() -> Self {
        Self {
            schema: DEFAULT_SCHEMA.to_owned(),
            max_payload_bytes: esrs_core::store::DEFAULT_MAX_PAYLOAD_BYTES,
            idempotency_retention: esrs_core::store::DEFAULT_IDEMPOTENCY_RETENTION,
            notify: true,
            notify_interval: DEFAULT_NOTIFY_INTERVAL,
            poll_interval: DEFAULT_POLL_INTERVAL,
            page_size: DEFAULT_PAGE_SIZE,
            max_page_size: DEFAULT_MAX_PAGE_SIZE,
            settle_time: DEFAULT_SETTLE_TIME,
            max_connections: 10,
            acquire_timeout: Duration::from_secs(30),
            reuse_connections: true,
            slow_append_threshold: DEFAULT_SLOW_APPEND_THRESHOLD,
            partitions: 1,
        }
    }

    /// Creates the events table as `PARTITION BY HASH (stream_id)` with `n` partitions
    /// (PostgreSQL's own partitioning, no extension), for a table of billions of events:
    /// each stream's events in one partition, each partition with its own indexes, vacuumed
    /// and backed up on its own. `1`, the default, is one plain table. At most
    /// [`MAX_PARTITIONS`]; the number is checked when the store is built.
    ///
    /// Every guarantee holds unchanged: appends, versions and idempotency keys work per
    /// stream as before, and the global log is still one ordered log across the partitions
    /// (read through a merge of the partitions' indexes, without scanning any of them). The
    /// layout is chosen when [`PgStore::migrate`] creates the schema; migrating an existing
    /// schema with another number is refused with [`Error::PartitionLayout`].
    pub fn partitions(mut self, n: u16) -> Self {
        self.partitions = n;
        self
    }

    /// The schema holding esrs's tables: lowercase ASCII letters, digits and underscores,
    /// not starting with a digit, at most [`MAX_SCHEMA_LEN`] bytes. It is checked when the
    /// store is built.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Refuses event payloads over `limit` bytes, before anything is sent to the database.
    pub fn max_payload_bytes(mut self, limit: usize) -> Self {
        self.max_payload_bytes = limit;
        self
    }

    /// Whether appends notify waiting readers through `LISTEN`/`NOTIFY` (on by default).
    ///
    /// [`append`](esrs_core::EventStore::append) notifies after its commit, from a separate statement
    /// that appends share (see [`notify_interval`](Self::notify_interval)), so
    /// notifications cost appends no latency; readers in the same process are woken
    /// without the database. With notifications off, readers in other processes find new
    /// events by polling.
    pub fn notifications(mut self, on: bool) -> Self {
        self.notify = on;
        self
    }

    /// The shortest time between two notifications the store sends (5 ms by default).
    ///
    /// A store has at most one notification in flight and starts at most one per
    /// interval; it covers every append committed since the previous one. The interval is
    /// thus the bound on how much later than at once readers in other processes are woken
    /// (plus a round trip), and a busy writer sends at most one notification per interval
    /// instead of one per append. Readers in the same process are woken at once, whatever
    /// the interval. Zero sends the next notification as soon as the previous one is done.
    pub fn notify_interval(mut self, interval: Duration) -> Self {
        self.notify_interval = interval;
        self
    }

    /// How often [`wait_for_events`](esrs_core::EventStore::wait_for_events) checks the log when no
    /// notification arrives.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// How many rows the first query of a read of the global log
    /// ([`read_all`](esrs_core::EventStore::read_all),
    /// [`read_log`](esrs_core::EventStore::read_log)) returns at most, and the smallest
    /// page a read goes back to (at least 1; 5,000 by default).
    ///
    /// Every page is a query of its own that sees the transactions committed when it
    /// starts, so smaller pages let a long replay see new commits sooner and keep each
    /// query short, at the price of a round trip and a query's start-up per page. A read
    /// adapts its pages to its reader: a full page whose rows the reader took within 100 ms
    /// makes the next page twice as large, up to [`max_page_size`](Self::max_page_size); a
    /// page that took longer than a second makes the next one half as large again. The
    /// rows of a page are decoded as they arrive, so the page size does not change a
    /// read's memory. A page is an index scan when PostgreSQL has statistics of the events
    /// table (autovacuum gathers them; run `ANALYZE` after a bulk import): without them the
    /// planner may sort the rest of the log for each large page. A stream read
    /// ([`read_stream`](esrs_core::EventStore::read_stream), with or without a snapshot) is one query
    /// whatever its length.
    pub fn page_size(mut self, rows: u32) -> Self {
        self.page_size = rows.max(1);
        self
    }

    /// How many rows a page of a read of the global log grows to at most, while its reader
    /// takes full pages quickly (80,000 by default; a value below
    /// [`page_size`](Self::page_size) keeps every page at `page_size`). A replay of a long
    /// log at a million events a second pays for one query every 80 ms at most.
    pub fn max_page_size(mut self, rows: u32) -> Self {
        self.max_page_size = rows.max(1);
        self
    }

    /// How long [`read_all`](esrs_core::EventStore::read_all) waits, at the head of the log, for
    /// transactions that are older than committed events and still open (1 s by default).
    ///
    /// The global log is read in commit-safe order: an event is returned only once every
    /// older transaction has ended, so that none is skipped. When the read reaches events
    /// held back this way, it waits up to this long for the older transactions to end, then
    /// ends; the held-back events come with a later read. Zero ends the read at once.
    pub fn settle_time(mut self, time: Duration) -> Self {
        self.settle_time = time;
        self
    }

    /// How long idempotency keys are remembered
    /// ([`DEFAULT_IDEMPOTENCY_RETENTION`](esrs_core::store::DEFAULT_IDEMPOTENCY_RETENTION), 7
    /// days, by default). An older key is forgotten at once, whether or not
    /// [`PgStore::sweep_idempotency_keys`] has deleted its row yet: a request that comes
    /// back with it is appended as a new request.
    pub fn idempotency_retention(mut self, retention: Duration) -> Self {
        self.idempotency_retention = retention;
        self
    }

    /// The append time above which the store logs a warning
    /// ([`DEFAULT_SLOW_APPEND_THRESHOLD`], 50 ms, by default); zero turns the warning off.
    ///
    /// An append (through [`append`](esrs_core::EventStore::append) or
    /// [`PgStore::append_in`]) that takes longer logs a `tracing` warning with the stream,
    /// the number of events and the time in milliseconds: on an SSD, appends that slow mean
    /// I/O pressure, lock contention or a saturated pool. A store logs at most one such
    /// warning per second; the next one says how many slow appends were not logged in
    /// between (`suppressed`). Every append's time is also recorded as the metric
    /// `esrs_append_duration_seconds` (see [`esrs_core::metrics`]).
    pub fn slow_append_threshold(mut self, threshold: Duration) -> Self {
        self.slow_append_threshold = threshold;
        self
    }

    /// The size of the pool [`connect`](Self::connect) opens.
    pub fn max_connections(mut self, connections: u32) -> Self {
        self.max_connections = connections.max(1);
        self
    }

    /// How long [`connect`](Self::connect)'s pool tries to get a connection (30 s by
    /// default) before an operation fails with
    /// [`Error::Unavailable`](esrs_core::Error::Unavailable).
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Whether the store keeps the connections of its finished operations for its next ones
    /// (on by default), instead of returning each to the pool.
    ///
    /// sqlx's pool checks every connection returned to it with a round trip (a ping), which
    /// doubles the statements a busy store sends. With reuse on, a connection whose
    /// operation completed is kept ("parked") for the store's next operation, without the
    /// ping; a connection whose operation was cancelled midway or failed on I/O still goes
    /// back to the pool, which checks it. At most as many connections are parked as the
    /// pool may open; while the pool has no idle connection left at its full size, one
    /// finished connection every 10 ms goes back to it (so that other users of the pool
    /// are not kept waiting); and each is parked for at most 100 ms: after that, or at once
    /// when the pool is closed, it goes back to the pool.
    /// [`Pool::close`](sqlx::Pool::close) thus completes within about 200 ms of the store's
    /// last operation, however many connections are parked.
    ///
    /// A connection also goes back to the pool at the end of the first operation after it
    /// has been out of the pool for 10 s (or half the pool's `max_lifetime`, if shorter),
    /// however busy the store is, so that the pool's own policies reach it: its
    /// `max_lifetime` (overrun by half of it at most), and its `after_release`,
    /// `before_acquire` and `test_before_acquire` checks (run that often, not after every
    /// operation).
    /// A pool given to [`build`](Self::build) whose hooks must run around every operation
    /// needs reuse off. A store dropped outside a runtime returns its parked connections
    /// through the runtime they were parked on, so a shared pool keeps its capacity.
    pub fn reuse_connections(mut self, on: bool) -> Self {
        self.reuse_connections = on;
        self
    }

    /// Opens a pool to `url` and builds the store on it. Run [`PgStore::migrate`] once
    /// before the first use of a new database.
    ///
    /// The pool does not ping a connection before handing it out, so an append is one
    /// round trip; a connection that broke while idle surfaces as
    /// [`Error::Unavailable`](esrs_core::Error::Unavailable) on its next use.
    ///
    /// The first connection is opened before the pool, so that a server that refuses it
    /// fails the call at once with the cause: a refused or broken connection is
    /// [`Error::Unavailable`] with the I/O error as its source (and so is a connection not
    /// established within the [`acquire_timeout`](Self::acquire_timeout)); a database that
    /// does not exist, a refused login or a malformed `url` is [`Error::Database`], which
    /// retrying cannot help.
    pub async fn connect(self, url: &str) -> Result<PgStore> {
        let options: PgConnectOptions = url.parse().map_err(Error::Database)?;
        self.connect_with(options).await
    }

    /// Opens a pool with connection `options` and builds the store on it, like
    /// [`connect`](Self::connect).
    pub async fn connect_with(self, options: PgConnectOptions) -> Result<PgStore> {
        validate_schema(&self.schema)?;
        // sqlx's pool retries a refused connection until its acquire timeout and then
        // reports only the timeout: one connection of its own first keeps the cause.
        let first =
            tokio::time::timeout(self.acquire_timeout, PgConnection::connect_with(&options))
                .await
                .map_err(|_| {
                    Error::Unavailable(sqlx::Error::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "no connection to PostgreSQL within the acquire timeout ({:?})",
                            self.acquire_timeout
                        ),
                    )))
                })?
                .map_err(Error::from_sqlx)?;
        first.close().await.map_err(Error::from_sqlx)?;
        let pool = PgPoolOptions::new()
            .max_connections(self.max_connections)
            .test_before_acquire(false)
            .acquire_timeout(self.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(Error::from_sqlx)?;
        self.build(pool)
    }

    /// Builds the store on an existing pool.
    pub fn build(self, pool: PgPool) -> Result<PgStore> {
        validate_schema(&self.schema)?;
        if self.partitions == 0 || self.partitions > MAX_PARTITIONS {
            return Err(Error::PartitionLayout {
                schema: self.schema,
                asked: self.partitions,
                found: None,
            });
        }
        Ok(self.build_unchecked(pool))
    }

    /// Builds the store without checking the schema name (the caller knows it is valid).
    pub(super) fn build_unchecked(self, pool: PgPool) -> PgStore {
        PgStore {
            inner: Arc::new(Inner {
                conns: connection::Connections::new(pool, self.reuse_connections),
                sql: Sql::new(&self.schema),
                notifier: notify::Notifier::new(),
                seen: connection::Seen::default(),
                schema: self.schema,
                max_payload_bytes: self.max_payload_bytes,
                idempotency_retention: self.idempotency_retention,
                notify: self.notify,
                notify_interval: self.notify_interval,
                poll_interval: self.poll_interval,
                page_size: self.page_size,
                max_page_size: self.max_page_size,
                settle_time: self.settle_time,
                slow_appends: super::slow::SlowAppends::new(self.slow_append_threshold),
                partitions: self.partitions,
            }),
        }
    }
}

/// Checks that `schema` can be written into SQL as is.
fn validate_schema(schema: &str) -> Result<()> {
    let refuse = |reason| {
        Err(Error::InvalidSchema {
            name: schema.to_owned(),
            reason,
        })
    };
    if schema.is_empty() {
        return refuse("it is empty");
    }
    if schema.len() > MAX_SCHEMA_LEN {
        return refuse("it is longer than 56 bytes");
    }
    if !schema
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return refuse("only lowercase ASCII letters, digits and underscores are allowed");
    }
    if schema.as_bytes()[0].is_ascii_digit() {
        return refuse("it cannot start with a digit");
    }
    if schema.starts_with("pg_") {
        return refuse("names starting with `pg_` are reserved by PostgreSQL");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names() {
        assert!(validate_schema("esrs").is_ok());
        assert!(validate_schema("app_events_2").is_ok());
        assert!(validate_schema(&"s".repeat(MAX_SCHEMA_LEN)).is_ok());
        for bad in [
            "",
            "Esrs",
            "9lives",
            "a-b",
            "a b",
            "x\"; DROP TABLE events; --",
            "pg_catalog",
            "ünï",
        ] {
            assert!(
                matches!(validate_schema(bad), Err(Error::InvalidSchema { .. })),
                "{bad:?} accepted"
            );
        }
        assert!(validate_schema(&"s".repeat(MAX_SCHEMA_LEN + 1)).is_err());
    }
}
