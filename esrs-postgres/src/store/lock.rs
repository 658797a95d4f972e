//! The exclusive right to run one projection, held as a session advisory lock.

use esrs_core::Position;
use sqlx::Connection;
use sqlx::postgres::PgConnection;

use super::PgStore;
use super::read::Xid8;
use crate::error::to_core;

/// The exclusive right to run one projection against a store's schema, across processes.
///
/// Held on a connection of its own (taken out of the pool) as a PostgreSQL session advisory
/// lock; it is released by [`ProjectionLock::release`], or when the lock is dropped (the
/// connection closes) or the process dies.
#[derive(Debug)]
pub struct ProjectionLock {
    conn: PgConnection,
    key: i64,
}

impl ProjectionLock {
    /// Releases the lock and closes its connection.
    pub async fn release(mut self) -> esrs_core::Result<()> {
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(self.key)
            .execute(&mut self.conn)
            .await
            .map_err(to_core)?;
        self.conn.close().await.map_err(to_core)
    }
}

impl PgStore {
    /// Takes the exclusive right to run `projection`, or returns `None` if another runner
    /// (in this process or another) holds it.
    pub async fn try_lock_projection(
        &self,
        projection: &str,
    ) -> esrs_core::Result<Option<ProjectionLock>> {
        // Tried on one of the store's connections: a standby runner retrying the lock
        // opens no connection per try. The connection that gets the lock leaves the pool
        // with it (the pool may open another in its place).
        let mut lease = self.lease().await.map_err(to_core)?;
        let tried: Result<(bool, i64), sqlx::Error> =
            sqlx::query_as("SELECT pg_try_advisory_lock(k), k FROM hashtextextended($1, 0) AS k")
                .bind(format!("esrs projection {}.{projection}", self.schema()))
                .fetch_one(lease.conn())
                .await;
        let ((_, key), locked) = lease
            .finish_or_keep(tried, |(locked, _)| *locked)
            .map_err(to_core)?;
        Ok(locked.map(|conn| ProjectionLock { conn, key }))
    }

    /// The position of the last event [`read_all`](esrs_core::EventStore::read_all) can
    /// return now, if any: the head a projection measures its lag against.
    pub async fn head_position(&self) -> esrs_core::Result<Option<Position>> {
        let mut lease = self.lease().await.map_err(to_core)?;
        let row = sqlx::query_as::<_, (Xid8, i64)>(&self.sql().head_position)
            .fetch_optional(lease.conn())
            .await;
        let row = lease.finish(row).map_err(to_core)?;
        Ok(row.map(|(commit, sequence)| Position::new(commit.0, super::read::unsigned(sequence))))
    }
}
