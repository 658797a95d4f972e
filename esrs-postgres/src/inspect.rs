//! What an operator asks of a store: its streams, its projections and their lag, its size,
//! and the oldest transaction holding back readers of the global log.

use std::time::Duration;

use chrono::{DateTime, Utc};
use esrs_core::Position;
use sqlx::Row as _;

use crate::PgStore;
use crate::error::{Error, Result};

/// A stream, as [`PgStore::streams`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct StreamInfo {
    /// The stream id.
    pub stream: String,
    /// Its version (the version of its last event).
    pub version: u64,
    /// Its number of events (its version, unless the store was written by hand).
    pub events: u64,
    /// When its last event was recorded.
    pub last_recorded_at: DateTime<Utc>,
}

/// A checkpointed projection, as [`PgStore::projections`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct ProjectionInfo {
    /// The projection's name.
    pub projection: String,
    /// Its checkpoint.
    pub checkpoint: Position,
    /// When the checkpoint last moved.
    pub updated_at: DateTime<Utc>,
    /// Committed events after the checkpoint: its lag in events.
    pub lag_events: u64,
    /// The age of the oldest event after the checkpoint (none when it is caught up): its
    /// lag in time.
    pub lag: Option<Duration>,
    /// Whether a runner (of any process) holds the projection's lock now.
    pub locked: bool,
}

/// A transaction that holds back readers of the global log: events written after it began
/// become readable only once it ends (the documented trade-off of a gap-free log).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct OpenTransaction {
    /// Its server process.
    pub pid: i32,
    /// How long it has been open.
    pub age: Duration,
    /// Its session's state (`active`, `idle in transaction`, …).
    pub state: Option<String>,
    /// The start of its current or last statement.
    pub query: Option<String>,
}

/// The store's size and health, as [`PgStore::stats`] measures them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct StoreStats {
    /// Events.
    pub events: u64,
    /// Streams.
    pub streams: u64,
    /// Snapshots.
    pub snapshots: u64,
    /// Idempotency keys kept.
    pub idempotency_keys: u64,
    /// Checkpointed projections.
    pub projections: u64,
    /// The events table's size on disk, in bytes, without its indexes.
    pub events_table_bytes: u64,
    /// The events table's indexes' size on disk, in bytes.
    pub events_index_bytes: u64,
    /// The size on disk of every table of the schema, indexes included, in bytes.
    pub schema_bytes: u64,
    /// The oldest open transaction of this database that has written (holds a
    /// transaction id): while it is open, the global log is readable only up to where it
    /// began.
    pub oldest_open_transaction: Option<OpenTransaction>,
}

/// The error of [`PgStore::reset_projection`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResetError {
    /// A runner holds the projection's lock: stop it first. Nothing was changed.
    #[error("projection `{projection}` is running (a runner holds its lock); stop it first")]
    Running {
        /// The projection.
        projection: String,
    },
    /// The projection has no checkpoint.
    #[error("projection `{projection}` has no checkpoint")]
    Unknown {
        /// The projection.
        projection: String,
    },
    /// The database failed.
    #[error("resetting the projection failed")]
    Store(#[source] esrs_core::Error),
}

fn unsigned(value: i64) -> u64 {
    value.max(0).unsigned_abs()
}

fn duration(seconds: f64) -> Duration {
    Duration::try_from_secs_f64(seconds.max(0.0)).unwrap_or(Duration::MAX)
}

impl PgStore {
    /// The streams whose id starts with `prefix`, in id order, at most `limit` of them.
    pub async fn streams(&self, prefix: &str, limit: u32) -> Result<Vec<StreamInfo>> {
        let schema = self.schema();
        let rows = sqlx::query(&format!(
            "SELECT stream_id, max(version) AS version, count(*) AS events,
                    max(recorded_at) AS last_recorded_at
             FROM {schema}.events
             WHERE stream_id >= $1 AND starts_with(stream_id, $1)
             GROUP BY stream_id ORDER BY stream_id LIMIT $2"
        ))
        .bind(prefix)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(Error::from_sqlx)?;
        rows.into_iter()
            .map(|row| {
                Ok(StreamInfo {
                    stream: row.try_get("stream_id")?,
                    version: unsigned(row.try_get("version")?),
                    events: unsigned(row.try_get("events")?),
                    last_recorded_at: row.try_get("last_recorded_at")?,
                })
            })
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(Error::from_sqlx)
    }

    /// Every checkpointed projection with its lag and whether a runner holds it, by name.
    pub async fn projections(&self) -> Result<Vec<ProjectionInfo>> {
        let schema = self.schema();
        let rows = sqlx::query(&format!(
            "SELECT c.projection, c.transaction_id, c.sequence, c.updated_at,
                    lag.events AS lag_events,
                    extract(epoch FROM now() - lag.oldest)::float8 AS lag_seconds,
                    EXISTS (
                        SELECT 1 FROM pg_locks l, hashtextextended('esrs projection ' || $1 || '.' || c.projection, 0) AS k
                        WHERE l.locktype = 'advisory'
                          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                          AND l.classid = ((k >> 32) & 4294967295)::oid
                          AND l.objid = (k & 4294967295)::oid
                          AND l.objsubid = 1
                    ) AS locked
             FROM {schema}.checkpoints c
             CROSS JOIN LATERAL (
                 SELECT count(*) AS events, min(e.recorded_at) AS oldest
                 FROM {schema}.events e
                 WHERE (e.transaction_id, e.sequence) > (c.transaction_id::text::xid8, c.sequence)
             ) AS lag
             ORDER BY c.projection"
        ))
        .bind(schema)
        .fetch_all(self.pool())
        .await
        .map_err(Error::from_sqlx)?;
        rows.into_iter()
            .map(|row| {
                let lag_seconds: Option<f64> = row.try_get("lag_seconds")?;
                Ok(ProjectionInfo {
                    projection: row.try_get("projection")?,
                    checkpoint: Position::new(
                        unsigned(row.try_get("transaction_id")?),
                        unsigned(row.try_get("sequence")?),
                    ),
                    updated_at: row.try_get("updated_at")?,
                    lag_events: unsigned(row.try_get("lag_events")?),
                    lag: lag_seconds.map(duration),
                    locked: row.try_get("locked")?,
                })
            })
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(Error::from_sqlx)
    }

    /// Removes `projection`'s checkpoint, so that its next run rebuilds it from the start
    /// of the log. Refused while a runner holds its lock; the lock is held while the
    /// checkpoint goes, so no runner starts meanwhile. A read model kept outside the
    /// checkpoint's transaction must be cleared by its owner.
    pub async fn reset_projection(&self, projection: &str) -> Result<(), ResetError> {
        let lock = self
            .try_lock_projection(projection)
            .await
            .map_err(ResetError::Store)?
            .ok_or_else(|| ResetError::Running {
                projection: projection.to_owned(),
            })?;
        let deleted = sqlx::query(&format!(
            "DELETE FROM {}.checkpoints WHERE projection = $1",
            self.schema()
        ))
        .bind(projection)
        .execute(self.pool())
        .await
        .map_err(|e| ResetError::Store(Error::from_sqlx(e).into()));
        lock.release().await.map_err(ResetError::Store)?;
        if deleted?.rows_affected() == 0 {
            return Err(ResetError::Unknown {
                projection: projection.to_owned(),
            });
        }
        Ok(())
    }

    /// The store's counts, sizes on disk, and the oldest open transaction holding back
    /// readers of the global log.
    pub async fn stats(&self) -> Result<StoreStats> {
        let schema = self.schema();
        let row = sqlx::query(&format!(
            "SELECT (SELECT count(*) FROM {schema}.events) AS events,
                    (SELECT count(*) FROM (SELECT DISTINCT stream_id FROM {schema}.events) s) AS streams,
                    (SELECT count(*) FROM {schema}.snapshots) AS snapshots,
                    (SELECT count(*) FROM {schema}.idempotency_keys) AS idempotency_keys,
                    (SELECT count(*) FROM {schema}.checkpoints) AS projections,
                    pg_relation_size('{schema}.events') AS events_table_bytes,
                    pg_indexes_size('{schema}.events') AS events_index_bytes,
                    (SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
                     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')) AS schema_bytes"
        ))
        .bind(schema)
        .fetch_one(self.pool())
        .await
        .map_err(Error::from_sqlx)?;
        let oldest = sqlx::query(
            "SELECT pid, extract(epoch FROM now() - xact_start)::float8 AS age, state,
                    left(query, 200) AS query
             FROM pg_stat_activity
             WHERE backend_xid IS NOT NULL AND datname = current_database()
             ORDER BY xact_start LIMIT 1",
        )
        .fetch_optional(self.pool())
        .await
        .map_err(Error::from_sqlx)?;
        let get = |row: &sqlx::postgres::PgRow, name: &str| -> Result<u64> {
            row.try_get::<i64, _>(name)
                .map(unsigned)
                .map_err(Error::from_sqlx)
        };
        let oldest_open_transaction = match oldest {
            None => None,
            Some(row) => Some(OpenTransaction {
                pid: row.try_get("pid").map_err(Error::from_sqlx)?,
                age: duration(
                    row.try_get::<Option<f64>, _>("age")
                        .map_err(Error::from_sqlx)?
                        .unwrap_or(0.0),
                ),
                state: row.try_get("state").map_err(Error::from_sqlx)?,
                query: row.try_get("query").map_err(Error::from_sqlx)?,
            }),
        };
        Ok(StoreStats {
            events: get(&row, "events")?,
            streams: get(&row, "streams")?,
            snapshots: get(&row, "snapshots")?,
            idempotency_keys: get(&row, "idempotency_keys")?,
            projections: get(&row, "projections")?,
            events_table_bytes: get(&row, "events_table_bytes")?,
            events_index_bytes: get(&row, "events_index_bytes")?,
            schema_bytes: get(&row, "schema_bytes")?,
            oldest_open_transaction,
        })
    }
}
