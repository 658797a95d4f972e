//! The exclusive right to run one projection, held as a session advisory lock.

use sqlx::postgres::PgConnection;
use sqlx::{Connection, Row};

use super::PgStore;
use super::sql::pg_type::{BOOL, INT8};
use super::sql::{Column, index};
use crate::error::to_core;

/// The exclusive right to run one projection against a store's schema, across processes.
///
/// Held on a connection of its own (taken out of the pool) as a PostgreSQL session advisory
/// lock; it is released by [`ProjectionLock::release`], or when the lock is dropped (the
/// connection closes) or the process dies.
///
/// Each taking of the lock makes its holder the projection's next owner (an epoch in the
/// `projection_owners` table). The connection can die without its holder knowing (a
/// server restart, a terminated backend), and another runner can then take the lock: the
/// checkpoint saves of [`PgCheckpoints`](crate::PgCheckpoints) are fenced by the epoch, so
/// the runner that lost its lock fails with
/// [`CheckpointError::LockLost`](esrs_core::projection::CheckpointError::LockLost) at its
/// next save, and the new holder goes on.
#[derive(Debug)]
pub struct ProjectionLock {
    conn: PgConnection,
    key: i64,
    /// The owner epoch this taking of the lock made current (`projection_owners`).
    epoch: i64,
}

impl ProjectionLock {
    /// The owner epoch this taking of the lock made current.
    pub(crate) fn epoch(&self) -> i64 {
        self.epoch
    }

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

/// The columns of `projection_lock_held.sql`: whether another session holds the lock, and
/// the lock's key.
pub(crate) const LOCK_HELD_COLUMNS: &[Column] =
    &[Column::new("held", BOOL), Column::new("key", INT8)];
const HELD: usize = index(LOCK_HELD_COLUMNS, "held");
const KEY: usize = index(LOCK_HELD_COLUMNS, "key");

/// The column of a projection's owner epoch (`take_projection.sql`,
/// `projection_owner.sql`).
pub(crate) const EPOCH_COLUMNS: &[Column] = &[Column::new("epoch", INT8)];
const EPOCH: usize = index(EPOCH_COLUMNS, "epoch");

impl PgStore {
    /// Takes the exclusive right to run `projection`, or returns `None` if another runner
    /// (in this process or another) holds it.
    ///
    /// Cancellation-safe: a call dropped at any point (an aborted task, a timeout, a
    /// `select!`) leaves no lock behind on a connection of the pool. The lock statement
    /// runs only on a connection that has already left the pool, so a cancelled attempt
    /// closes that connection, and the server frees whatever it took.
    pub async fn try_lock_projection(
        &self,
        projection: &str,
    ) -> esrs_core::Result<Option<ProjectionLock>> {
        // First, whether another session holds it: a plain read, on one of the store's
        // connections, that leaves nothing behind if it is cancelled. A standby runner
        // retrying the lock opens no connection per try.
        let (held, key) = {
            let mut lease = self.connections().lease().await.map_err(to_core)?;
            let row = sqlx::query(&self.sql().projection_lock_held)
                .bind(format!("esrs projection {}.{projection}", self.schema()))
                .fetch_one(&mut lease)
                .await
                .map_err(to_core)?;
            let held: bool = row.try_get(HELD).map_err(to_core)?;
            let key: i64 = row.try_get(KEY).map_err(to_core)?;
            (held, key)
        };
        if held {
            return Ok(None);
        }
        // It looks free: take it on a connection that leaves the pool first (the pool may
        // open another in its place).
        let mut conn = self.connections().lease().await.map_err(to_core)?.detach();
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut conn)
            .await
            .map_err(to_core)?;
        if locked {
            // The new owner, from now on: a save of the previous one still in progress is
            // waited for, and none of its later saves commits.
            let row = sqlx::query(&self.sql().take_projection)
                .bind(projection)
                .fetch_one(&mut conn)
                .await
                .map_err(to_core)?;
            let epoch: i64 = row.try_get(EPOCH).map_err(to_core)?;
            return Ok(Some(ProjectionLock { conn, key, epoch }));
        }
        // Taken in between by another runner: this connection holds nothing, but it is
        // out of the pool for good.
        let _ = conn.close().await;
        Ok(None)
    }
}
