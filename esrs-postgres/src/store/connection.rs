//! The store's connections: every database access of the crate goes through this module.
//! Connections are checked out of the pool once and reused by operation after operation,
//! without the pool's liveness round trip between them.
//!
//! sqlx's pool pings every connection returned to it (that is how it recovers a connection
//! whose query was dropped midway), one round trip per checkout that the caller does not
//! see but the client and the server pay for. The store instead keeps the connections its
//! operations have finished with ("parked"), and hands them to its next operations directly:
//!
//! - A connection is parked only by an operation that **completed** (its future or stream
//!   ran to the end, or failed with an error the server reported, after which the protocol
//!   is in step). A connection whose operation was cancelled midway, or which failed on I/O
//!   or on the protocol, goes back to the pool, whose ping recovers or closes it.
//! - At most as many connections are parked as the pool may open. While the pool is at its
//!   size with no idle connection left (someone else may be waiting for one), one finished
//!   connection every [`GIVE_WAY_EVERY`] goes back to the pool instead of being parked:
//!   returning every one would make each operation pay the ping again exactly when the
//!   store is busiest, and parking every one could keep a waiter waiting.
//! - A connection parked for [`PARK_TIME`] goes back to the pool, so that other users of
//!   the pool get it and [`Pool::close`](sqlx::Pool::close) completes; a closed pool gets
//!   every parked connection back at once.
//! - A connection goes back to the pool when it finishes an operation after being out of
//!   the pool for [`MAX_OUT`] (or half the pool's `max_lifetime`, if shorter), however busy
//!   the store is, so that the pool's own policies (its `max_lifetime`, its `after_release`
//!   and `before_acquire` hooks, `test_before_acquire`) apply to every connection at that
//!   rate.
//! - A store dropped outside a runtime hands its parked connections back through the
//!   runtime they were parked on, so that a shared pool keeps its capacity.
//!
//! # One entry point
//!
//! An operation takes a [`Lease`] from [`Connections::lease`] and runs its statements on it:
//! `&mut Lease` is a sqlx [`Executor`](sqlx::Executor), used as a `&mut PgConnection`
//! would be. The lease watches every statement run on it, and when it is dropped the layer
//! decides from what it saw: the connection is parked if no statement is in flight and the
//! last one ran to its end or failed with an error the server reported; otherwise (a future
//! or stream dropped midway, an I/O or protocol failure) it goes back to the pool. Nothing
//! is handed back by hand, so no operation can forget to. A transaction on a lease
//! ([`Lease::begin`]) keeps the lease busy until it commits: one dropped or failed returns
//! the connection to the pool, whose ping also delivers the rollback sqlx queued for it.
//!
//! Statements that leave session state behind (an advisory lock, `SET`, an open
//! transaction outside [`Lease::begin`]) are not run on a lease, which would park the
//! connection with that state. They use the exceptions below, each a connection that leaves
//! the layer's rules for its whole life:
//!
//! - [`Lease::detach`]: a connection that leaves the pool for good, for a session-level
//!   state that must outlive an operation (a projection's advisory lock, see
//!   [`ProjectionLock`](crate::ProjectionLock)).
//! - [`Connections::begin`]: a transaction handed to a caller as a
//!   [`PgTransaction`] (a projection runner's batch, an inline
//!   projection). sqlx's `Transaction<'static>` owns its connection, so it comes from the
//!   pool and goes back to it (with the pool's ping) when the transaction ends.
//! - [`Connections::listen`]: the store's `LISTEN` connection, on a one-connection pool
//!   of its own, so that listening never takes a connection from the store's pool.
//!
//! Methods that run on a connection the caller passes in (`append_in`, `load_checkpoint_in`,
//! `move_checkpoint_in`) use the caller's connection as it is: it is not the store's.
//!
//! [`Seen`] keeps what the store has seen through its connections of the streams' versions,
//! which lets an append skip a lookup.

mod lease;
mod park;
mod seen;

pub(crate) use lease::Lease;
pub(crate) use seen::{Seen, Table};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};

use crate::PgTransaction;

/// How long a connection stays parked before it goes back to the pool.
pub(crate) const PARK_TIME: Duration = Duration::from_millis(100);

/// While the pool has no connection left to give, one finished connection goes back to it
/// this often (the others are parked), so that someone waiting for the pool gets one soon.
pub(crate) const GIVE_WAY_EVERY: Duration = Duration::from_millis(10);

/// The longest a connection is reused without going back to the pool in between (shorter
/// when half the pool's `max_lifetime` is).
pub(crate) const MAX_OUT: Duration = Duration::from_secs(10);

/// How long the listener's pool tries to open its connection.
const LISTEN_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The pool and the connections parked by the store's operations.
pub(crate) struct Connections {
    pool: PgPool,
    /// Whether connections are parked at all.
    park: bool,
    state: Arc<Mutex<park::Parked>>,
}

impl Connections {
    /// The connections of `pool`, parked between operations if `park` is set.
    pub(crate) fn new(pool: PgPool, park: bool) -> Self {
        Self {
            pool,
            park,
            state: Arc::default(),
        }
    }

    /// The pool the connections come from.
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A connection for one operation: the most recently parked one, else one from the pool.
    pub(crate) async fn lease(&self) -> Result<Lease<'_>, sqlx::Error> {
        if self.park {
            if self.pool.is_closed() {
                self.unpark_all();
            } else if let Some((conn, out_since)) = self.unpark() {
                return Ok(Lease::new(self, conn, out_since));
            }
        }
        let conn = self.pool.acquire().await?;
        Ok(Lease::new(self, conn, Instant::now()))
    }

    /// A transaction for a caller that holds it as a [`PgTransaction`]: on a connection of
    /// the pool, to which it goes back when the transaction ends (see the module's doc).
    pub(crate) async fn begin(&self) -> Result<PgTransaction, sqlx::Error> {
        self.pool.begin().await
    }

    /// Listens on `channel` on a connection of its own, outside the pool (see the module's
    /// doc), opened with the pool's connect options.
    pub(crate) async fn listen(&self, channel: &str) -> Result<Listener, sqlx::Error> {
        let options = (*self.pool.connect_options()).clone();
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(LISTEN_CONNECT_TIMEOUT)
            .connect_lazy_with(options);
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(channel).await?;
        Ok(Listener { listener, pool })
    }
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections")
            .field("park", &self.park)
            .field("parked", &self.parked())
            .finish()
    }
}

/// The store's `LISTEN` connection and the one-connection pool it lives in.
pub(crate) struct Listener {
    listener: PgListener,
    pool: PgPool,
}

impl Listener {
    /// Waits for the next notification, or for the listener to re-establish a lost
    /// connection (after which notifications may have been missed). An error means the
    /// listener cannot go on.
    pub(crate) async fn recv(&mut self) -> Result<(), sqlx::Error> {
        self.listener.try_recv().await.map(drop)
    }

    /// Closes the listener's pool.
    pub(crate) async fn close(self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod test_support {
    use sqlx::postgres::PgPoolOptions;

    use super::Connections;

    /// The connections of a pool of `max` on the test database, parked between operations.
    pub(super) async fn connections(max: u32) -> Connections {
        let url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let pool = PgPoolOptions::new()
            .max_connections(max)
            .connect(&url)
            .await
            .expect("the test database is reachable (set DATABASE_URL)");
        Connections::new(pool, true)
    }
}
