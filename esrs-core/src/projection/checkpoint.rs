//! Checkpoints: where a projection got to, the unit of work its handlers write in, and the
//! lock that keeps one runner per projection; [`InMemoryCheckpoints`].

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::position::Position;

use super::*;

/// Where projections keep their checkpoints, and the unit of work their handlers write in.
///
/// A batch goes: [`begin`](Self::begin), the handlers, [`save`](Self::save) (compare and
/// set: it fails with [`CheckpointError::Moved`] if the checkpoint is not at `from`, and
/// with [`CheckpointError::LockLost`] if the runner's lock is no longer the current one),
/// [`commit`](Self::commit). A rebuild goes: `begin`, `save(…, Position::START)`,
/// [`Projection::reset`], `commit`. A unit of work whose handler, reset or save fails goes
/// to [`rollback`](Self::rollback) instead of `commit`. A store whose `Tx` is a real
/// transaction makes the handlers' effects and the checkpoint atomic.
pub trait CheckpointStore: Send + Sync + 'static {
    /// The unit of work handed to handlers and committed with the checkpoint.
    type Tx: Send;
    /// Held while a runner runs; dropping it lets another runner start.
    type Lock: Send + Sync;

    /// The checkpoint of `projection`; [`Position::START`] when it has none.
    fn load(
        &self,
        projection: &str,
    ) -> impl Future<Output = Result<Position, CheckpointError>> + Send;

    /// Starts a unit of work.
    fn begin(&self) -> impl Future<Output = Result<Self::Tx, CheckpointError>> + Send;

    /// Moves the checkpoint of `projection` from `from` to `to` within `tx`, for the runner
    /// holding `lock`, failing with [`CheckpointError::Moved`] if it is not at `from`.
    ///
    /// A store whose locks can be lost without their holder knowing (a database lock held
    /// by a connection that died) fences its saves: each taking of the lock is a new
    /// owner, and a save under an owner that is no longer the current one fails with
    /// [`CheckpointError::LockLost`], so that a runner that lost its lock stops at its next
    /// commit at the latest, and never commits beside the new holder.
    fn save(
        &self,
        tx: &mut Self::Tx,
        lock: &Self::Lock,
        projection: &str,
        from: Position,
        to: Position,
    ) -> impl Future<Output = Result<(), CheckpointError>> + Send;

    /// Commits the unit of work.
    fn commit(&self, tx: Self::Tx) -> impl Future<Output = Result<(), CheckpointError>> + Send;

    /// Abandons the unit of work, as a runner does when a handler or a save fails: nothing
    /// of it takes effect. The default drops it; a store whose `Tx` holds locks until it
    /// ends rolls back here, so that they are released before the failure is reported.
    fn rollback(&self, tx: Self::Tx) -> impl Future<Output = ()> + Send {
        async move { drop(tx) }
    }

    /// Takes the exclusive right to run `projection`, or returns `None` if another runner
    /// holds it.
    fn try_lock(
        &self,
        projection: &str,
    ) -> impl Future<Output = Result<Option<Self::Lock>, CheckpointError>> + Send;

    /// Gives the right back, so that another runner can take it at once. The default drops
    /// the lock.
    fn unlock(&self, lock: Self::Lock) -> impl Future<Output = Result<(), CheckpointError>> + Send {
        async move {
            drop(lock);
            Ok(())
        }
    }
}

/// Checkpoints held in memory, shared by clones; for tests, prototypes and read models
/// that are themselves rebuilt at every start.
///
/// Its unit of work is `()`: each save is applied at once, so a projection running with it
/// gets at-least-once delivery. Its locks are per process.
#[derive(Debug, Clone, Default)]
pub struct InMemoryCheckpoints {
    inner: Arc<Mutex<CheckpointState>>,
}

#[derive(Debug, Default)]
pub(super) struct CheckpointState {
    positions: HashMap<String, Position>,
    running: HashSet<String>,
}

impl InMemoryCheckpoints {
    /// No checkpoint yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The checkpoint of `projection`, if one was saved.
    pub fn get(&self, projection: &str) -> Option<Position> {
        self.lock().positions.get(projection).copied()
    }

    fn lock(&self) -> MutexGuard<'_, CheckpointState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The right to run one projection over [`InMemoryCheckpoints`]; released when dropped.
#[derive(Debug)]
pub struct InMemoryLock {
    inner: Arc<Mutex<CheckpointState>>,
    projection: String,
}

impl Drop for InMemoryLock {
    fn drop(&mut self) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .running
            .remove(&self.projection);
    }
}

impl CheckpointStore for InMemoryCheckpoints {
    type Tx = ();
    type Lock = InMemoryLock;

    async fn load(&self, projection: &str) -> Result<Position, CheckpointError> {
        Ok(self.get(projection).unwrap_or(Position::START))
    }

    async fn begin(&self) -> Result<(), CheckpointError> {
        Ok(())
    }

    async fn save(
        &self,
        _tx: &mut (),
        _lock: &InMemoryLock,
        projection: &str,
        from: Position,
        to: Position,
    ) -> Result<(), CheckpointError> {
        let mut state = self.lock();
        let actual = state.positions.get(projection).copied();
        if actual.unwrap_or(Position::START) != from {
            return Err(CheckpointError::Moved {
                expected: from,
                actual,
            });
        }
        state.positions.insert(projection.to_owned(), to);
        Ok(())
    }

    async fn commit(&self, _tx: ()) -> Result<(), CheckpointError> {
        Ok(())
    }

    async fn try_lock(&self, projection: &str) -> Result<Option<InMemoryLock>, CheckpointError> {
        if self.lock().running.insert(projection.to_owned()) {
            Ok(Some(InMemoryLock {
                inner: self.inner.clone(),
                projection: projection.to_owned(),
            }))
        } else {
            Ok(None)
        }
    }
}
