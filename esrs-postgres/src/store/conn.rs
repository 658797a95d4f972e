//! The store's connections: checked out of the pool once and reused by operation after
//! operation, without the pool's liveness round trip between them.
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

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use sqlx::Postgres;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgPool};

/// How long a connection stays parked before it goes back to the pool.
pub(crate) const PARK_TIME: Duration = Duration::from_millis(100);

/// While the pool has no connection left to give, one finished connection goes back to it
/// this often (the others are parked), so that someone waiting for the pool gets one soon.
pub(crate) const GIVE_WAY_EVERY: Duration = Duration::from_millis(10);

/// The longest a connection is reused without going back to the pool in between (shorter
/// when half the pool's `max_lifetime` is).
pub(crate) const MAX_OUT: Duration = Duration::from_secs(10);

/// The pool and the connections parked by the store's operations.
pub(crate) struct Connections {
    pool: PgPool,
    /// Whether connections are parked at all.
    park: bool,
    state: Arc<Mutex<Parked>>,
}

/// A parked connection, when it was parked, and since when it has been out of the pool.
struct Entry {
    conn: PoolConnection<Postgres>,
    parked_at: Instant,
    out_since: Instant,
}

/// The parked connections, most recently parked last, and the task that returns them.
#[derive(Default)]
struct Parked {
    connections: Vec<Entry>,
    sweeper: Option<tokio::task::JoinHandle<()>>,
    /// The runtime the connections were parked on: a store dropped outside a runtime
    /// returns them to the pool through it.
    runtime: Option<tokio::runtime::Handle>,
    /// When a finished connection last went back to a pool that had none left.
    gave_way: Option<Instant>,
}

impl Connections {
    pub(crate) fn new(pool: PgPool, park: bool) -> Self {
        Self {
            pool,
            park,
            state: Arc::default(),
        }
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A connection for one operation: the most recently parked one, else one from the pool.
    pub(crate) async fn lease(&self) -> Result<Lease<'_>, sqlx::Error> {
        if self.park {
            if self.pool.is_closed() {
                drop(self.take_all());
            } else if let Some(entry) = lock(&self.state).connections.pop() {
                return Ok(Lease {
                    owner: self,
                    conn: Some(entry.conn),
                    out_since: entry.out_since,
                });
            }
        }
        let conn = self.pool.acquire().await?;
        Ok(Lease {
            owner: self,
            conn: Some(conn),
            out_since: Instant::now(),
        })
    }

    fn take_all(&self) -> Vec<Entry> {
        std::mem::take(&mut lock(&self.state).connections)
    }

    /// Parks `conn`, out of the pool since `out_since`, or returns it to the pool when
    /// parking it could keep it from someone else or from the pool's policies.
    fn park(&self, conn: PoolConnection<Postgres>, out_since: Instant) {
        let options = self.pool.options();
        let max = usize::try_from(options.get_max_connections()).unwrap_or(usize::MAX);
        if !self.park || self.pool.is_closed() {
            return;
        }
        // Half the lifetime: a connection that came from the pool young goes back while the
        // pool can still take it (and run its hooks on it), and none outlives its lifetime
        // by more than half of it.
        let max_out = options
            .get_max_lifetime()
            .map_or(MAX_OUT, |lifetime| (lifetime / 2).min(MAX_OUT));
        if out_since.elapsed() >= max_out {
            // Back to the pool, which applies its lifetime, hooks and checks to it.
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let saturated =
            self.pool.size() >= options.get_max_connections() && self.pool.num_idle() == 0;
        let mut state = lock(&self.state);
        if state.connections.len() >= max {
            return;
        }
        if saturated {
            // Someone may be waiting for the pool: give way now and then.
            let now = Instant::now();
            if state
                .gave_way
                .is_none_or(|at| now.duration_since(at) >= GIVE_WAY_EVERY)
            {
                state.gave_way = Some(now);
                return;
            }
        }
        state.connections.push(Entry {
            conn,
            parked_at: Instant::now(),
            out_since,
        });
        if state.runtime.is_none() {
            state.runtime = Some(runtime.clone());
        }
        if state.sweeper.as_ref().is_none_or(|task| task.is_finished()) {
            let weak = Arc::downgrade(&self.state);
            let pool = self.pool.clone();
            state.sweeper = Some(runtime.spawn(sweep(weak, pool)));
        }
    }
}

impl Drop for Connections {
    fn drop(&mut self) {
        let (parked, runtime) = {
            let mut state = lock(&self.state);
            (std::mem::take(&mut state.connections), state.runtime.take())
        };
        // Each goes back to the pool through a task of sqlx's. Outside a runtime, the task
        // is spawned on the runtime the connections were parked on (connections are only
        // parked inside one); if that runtime has ended, the task is dropped unrun and the
        // pool, which counts each connection until it is dropped, keeps its size.
        let runtime = runtime.filter(|_| tokio::runtime::Handle::try_current().is_err());
        let _entered = runtime.as_ref().map(tokio::runtime::Handle::enter);
        drop(parked);
    }
}

/// Returns connections parked for [`PARK_TIME`] (all of them once the pool is closed) to the
/// pool, until none is parked or the store is gone.
async fn sweep(state: Weak<Mutex<Parked>>, pool: PgPool) {
    loop {
        tokio::time::sleep(PARK_TIME).await;
        let Some(state) = state.upgrade() else {
            return;
        };
        let expired = {
            let mut state = lock(&state);
            let now = Instant::now();
            // The oldest are first: the expired ones are a prefix of the list (all of it
            // once the pool is closed, which waits for every one of them).
            let expired = if pool.is_closed() {
                state.connections.len()
            } else {
                state
                    .connections
                    .iter()
                    .position(|entry| now.duration_since(entry.parked_at) < PARK_TIME)
                    .unwrap_or(state.connections.len())
            };
            let expired: Vec<_> = state.connections.drain(..expired).collect();
            if state.connections.is_empty() {
                state.sweeper = None;
                drop(state);
                drop(expired);
                return;
            }
            expired
        };
        drop(expired);
    }
}

fn lock(state: &Mutex<Parked>) -> MutexGuard<'_, Parked> {
    // The lock is never held across a panic-prone call; a poisoned lock still holds a
    // consistent list.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One operation's connection. [`finish`](Self::finish) parks it when the operation
/// completed; dropped otherwise, it goes back to the pool, whose ping recovers or closes it.
pub(crate) struct Lease<'a> {
    owner: &'a Connections,
    conn: Option<PoolConnection<Postgres>>,
    /// Since when the connection has been out of the pool.
    out_since: Instant,
}

impl Lease<'_> {
    /// The connection, for one or more statements.
    pub(crate) fn conn(&mut self) -> &mut PgConnection {
        self.conn
            .as_deref_mut()
            .expect("a lease holds its connection until it ends")
    }

    /// Ends the lease with the operation's result: the connection is parked if the
    /// operation completed and the protocol is in step (success, or an error the server
    /// reported), else returned to the pool.
    pub(crate) fn finish<T>(mut self, result: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
        if in_step(&result) {
            if let Some(conn) = self.conn.take() {
                self.owner.park(conn, self.out_since);
            }
        }
        result
    }

    /// Ends the lease like [`finish`](Self::finish), except that when `keep` says so of a
    /// successful result, the connection leaves the pool and comes back with it (the pool
    /// may open another in its place): for a session-level state, such as an advisory lock,
    /// that must live on its own connection.
    pub(crate) fn finish_or_keep<T>(
        mut self,
        result: Result<T, sqlx::Error>,
        keep: impl FnOnce(&T) -> bool,
    ) -> Result<(T, Option<PgConnection>), sqlx::Error> {
        match result {
            Ok(value) if keep(&value) => {
                let conn = self.conn.take().map(PoolConnection::detach);
                Ok((value, conn))
            }
            other => self.finish(other).map(|value| (value, None)),
        }
    }
}

/// Whether a connection is usable as is after an operation ended with `result`.
fn in_step<T>(result: &Result<T, sqlx::Error>) -> bool {
    match result {
        Ok(_) => true,
        // The server answered (and sqlx reads on to the end of the answer before the next
        // statement); anything else may have left the protocol midway.
        Err(error) => matches!(error, sqlx::Error::Database(_) | sqlx::Error::RowNotFound),
    }
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections")
            .field("park", &self.park)
            .field("parked", &lock(&self.state).connections.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use sqlx::postgres::PgPoolOptions;

    async fn connections(max: u32) -> Connections {
        let url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let pool = PgPoolOptions::new()
            .max_connections(max)
            .connect(&url)
            .await
            .expect("the test database is reachable (set DATABASE_URL)");
        Connections::new(pool, true)
    }

    fn parked(conns: &Connections) -> usize {
        lock(&conns.state).connections.len()
    }

    /// Only an operation that completed, or that the server answered with an error, parks
    /// its connection; a dropped lease or an I/O failure hands it back to the pool.
    #[tokio::test]
    async fn only_completed_operations_park_their_connection() {
        let conns = connections(4).await;

        let mut lease = conns.lease().await.expect("lease");
        let one: Result<i32, _> = sqlx::query_scalar("SELECT 1").fetch_one(lease.conn()).await;
        assert_eq!(lease.finish(one).expect("select"), 1);
        assert_eq!(parked(&conns), 1, "a completed operation parks");

        let mut lease = conns.lease().await.expect("lease");
        assert_eq!(parked(&conns), 0, "the parked connection is reused");
        let failed: Result<i32, _> = sqlx::query_scalar("SELECT 1 / 0")
            .fetch_one(lease.conn())
            .await;
        assert!(matches!(
            lease.finish(failed),
            Err(sqlx::Error::Database(_))
        ));
        assert_eq!(parked(&conns), 1, "an error the server reported parks");

        let mut lease = conns.lease().await.expect("lease");
        let mut rows = sqlx::query("SELECT generate_series(1, 1000)").fetch(lease.conn());
        futures_util::StreamExt::next(&mut rows).await;
        drop(rows);
        drop(lease);
        assert_eq!(parked(&conns), 0, "a dropped lease does not park");

        let lease = conns.lease().await.expect("lease");
        let broken: Result<(), _> = Err(sqlx::Error::Io(std::io::ErrorKind::BrokenPipe.into()));
        assert!(lease.finish(broken).is_err());
        assert_eq!(parked(&conns), 0, "an I/O failure does not park");
    }

    /// A pool at its size with no idle connection gets a finished connection back at once;
    /// parked connections go back to the pool after `PARK_TIME`.
    #[tokio::test]
    async fn parking_gives_way_to_the_pool() {
        let conns = connections(1).await;
        let lease = conns.lease().await.expect("lease");
        drop(lease.finish(Ok(())));
        assert_eq!(
            parked(&conns),
            0,
            "a pool with nothing left gets the connection back"
        );
        let lease = conns.lease().await.expect("lease");
        // The first gave way just now (so that a slow machine does not let GIVE_WAY_EVERY
        // pass between the two).
        lock(&conns.state).gave_way = Some(Instant::now());
        drop(lease.finish(Ok(())));
        assert_eq!(parked(&conns), 1, "… once per GIVE_WAY_EVERY");
        let waiter = tokio::time::timeout(Duration::from_secs(2), conns.pool().acquire())
            .await
            .expect("a waiter for the pool gets the parked connection within moments")
            .expect("a connection");
        drop(waiter);

        let conns = connections(2).await;
        let lease = conns.lease().await.expect("lease");
        drop(lease.finish(Ok(())));
        assert_eq!(parked(&conns), 1);
        let started = Instant::now();
        while conns.pool().num_idle() == 0 && started.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            started.elapsed() >= PARK_TIME / 2,
            "parked for PARK_TIME first"
        );
        assert_eq!(parked(&conns), 0, "returned to the pool after PARK_TIME");
        assert_eq!(conns.pool().num_idle(), 1);
    }
}
