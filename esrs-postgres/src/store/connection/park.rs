//! Parking: the connections kept between operations, the rules that send them back to the
//! pool (see the [module's doc](super)), and the task that returns them after
//! [`PARK_TIME`].

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Instant;

use sqlx::Postgres;
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgPool;

use super::{Connections, GIVE_WAY_EVERY, MAX_OUT, PARK_TIME};

/// A parked connection, when it was parked, and since when it has been out of the pool.
struct Entry {
    conn: PoolConnection<Postgres>,
    parked_at: Instant,
    out_since: Instant,
}

/// The parked connections, most recently parked last, and the task that returns them.
#[derive(Default)]
pub(super) struct Parked {
    connections: Vec<Entry>,
    sweeper: Option<tokio::task::JoinHandle<()>>,
    /// The runtime the connections were parked on: a store dropped outside a runtime
    /// returns them to the pool through it.
    runtime: Option<tokio::runtime::Handle>,
    /// When a finished connection last went back to a pool that had none left.
    gave_way: Option<Instant>,
}

impl Connections {
    /// The most recently parked connection and since when it has been out of the pool.
    pub(super) fn unpark(&self) -> Option<(PoolConnection<Postgres>, Instant)> {
        lock(&self.state)
            .connections
            .pop()
            .map(|entry| (entry.conn, entry.out_since))
    }

    /// Returns every parked connection to the pool.
    pub(super) fn unpark_all(&self) {
        let parked = std::mem::take(&mut lock(&self.state).connections);
        drop(parked);
    }

    /// How many connections are parked.
    pub(super) fn parked(&self) -> usize {
        lock(&self.state).connections.len()
    }

    /// Parks `conn`, out of the pool since `out_since`, or returns it to the pool when
    /// parking it could keep it from someone else or from the pool's policies.
    pub(super) fn park(&self, conn: PoolConnection<Postgres>, out_since: Instant) {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::test_support::connections;
    use super::*;

    /// A pool at its size with no idle connection gets a finished connection back at once;
    /// parked connections go back to the pool after `PARK_TIME`.
    #[tokio::test]
    async fn parking_gives_way_to_the_pool() {
        let conns = connections(1).await;
        let lease = conns.lease().await.expect("lease");
        drop(lease);
        assert_eq!(
            conns.parked(),
            0,
            "a pool with nothing left gets the connection back"
        );
        let lease = conns.lease().await.expect("lease");
        // The first gave way just now (so that a slow machine does not let GIVE_WAY_EVERY
        // pass between the two).
        lock(&conns.state).gave_way = Some(Instant::now());
        drop(lease);
        assert_eq!(conns.parked(), 1, "… once per GIVE_WAY_EVERY");
        let waiter = tokio::time::timeout(Duration::from_secs(2), conns.pool().acquire())
            .await
            .expect("a waiter for the pool gets the parked connection within moments")
            .expect("a connection");
        drop(waiter);

        let conns = connections(2).await;
        let lease = conns.lease().await.expect("lease");
        drop(lease);
        assert_eq!(conns.parked(), 1);
        let started = Instant::now();
        while conns.pool().num_idle() == 0 && started.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            started.elapsed() >= PARK_TIME / 2,
            "parked for PARK_TIME first"
        );
        assert_eq!(conns.parked(), 0, "returned to the pool after PARK_TIME");
        assert_eq!(conns.pool().num_idle(), 1);
    }
}
