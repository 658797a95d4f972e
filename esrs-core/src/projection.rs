//! Projections: read models built from the global log, with checkpoints, live following and
//! rebuilds.
//!
//! A [`Projection`] names itself, says which stored events it handles and handles each one.
//! A [`CheckpointStore`] keeps how far it got. A [`ProjectionRunner`] reads the store's global
//! log after that checkpoint in batches, hands every handled event to the projection,
//! and commits the checkpoint after each batch; spawned, it then follows new events live.
//!
//! # Delivery
//!
//! The checkpoint store decides what a handler's effect and the checkpoint have in common:
//!
//! - **Transactional read models** (exactly-once effect). The checkpoint store's
//!   [`Tx`](CheckpointStore::Tx) is a real transaction (for PostgreSQL, a
//!   `sqlx::Transaction`): the runner opens it, every handler of the batch writes in it, and
//!   the checkpoint is saved and committed in it. A crash anywhere rolls back both.
//! - **External read models** (at-least-once delivery). With a checkpoint store whose
//!   transaction the read model does not share ([`InMemoryCheckpoints`], or a database
//!   checkpoint beside a Redis read model), the checkpoint is saved after the batch's
//!   handlers have succeeded. After a crash or a failed batch, the events handled since the
//!   last checkpoint are delivered again: the handler receives each event's
//!   [`RecordedEvent::position`] (and stream and version) so it can ignore an event it has
//!   already applied.
//!
//! In both modes the checkpoint never passes an event that was not handled: a handler that
//! fails (or an event it handles that does not decode) stops the runner or is retried,
//! as the [`ErrorPolicy`] says; it is never skipped.
//!
//! # Running
//!
//! - [`ProjectionRunner::catch_up`] handles what is in the log now and returns;
//!   [`ProjectionRunner::rebuild`] first empties the read model ([`Projection::reset`]) and
//!   its checkpoint, in one unit of work.
//! - [`ProjectionRunner::spawn`] catches up, then follows the log: it waits for new events
//!   with [`EventStore::wait_for_events`] (a notification, or a poll every
//!   [`poll_interval`](ProjectionRunner::poll_interval)). The [`RunningProjection`] handle
//!   stops it cleanly, asks for a rebuild, waits for a position, and reports a
//!   [`ProjectionStatus`]: its checkpoint, the store's head, and the lag in events and time.
//! - Replay streams: one batch of recorded events is in memory at a time, each handled event
//!   is decoded once, and the checkpoint is written once per batch.
//! - A runner holds its checkpoint store's lock ([`CheckpointStore::try_lock`]) while it
//!   runs, so a second runner of the same projection fails with
//!   [`ProjectionError::AlreadyRunning`] or waits
//!   ([`ProjectionRunner::wait_for_lock`]). A lock can be lost without its holder knowing
//!   (the database connection holding it dies): checkpoint saves are fenced by the lock
//!   they were made under, so a runner that lost its lock stops with
//!   [`CheckpointError::LockLost`] at its next save, and the runner holding the lock goes
//!   on. Checkpoints are compare-and-set besides: a runner whose checkpoint was moved by
//!   another fails instead of applying events twice.
//!
//! ```
//! use esrs_core::projection::{InMemoryCheckpoints, Projection, ProjectionRunner};
//! use esrs_core::{BoxError, EventStore, RecordedEvent};
//! # use esrs_core::{AppendRequest, ExpectedVersion, InMemoryStore, NewEvent, StreamId};
//!
//! /// Counts every event of the store, whatever its name.
//! #[derive(Debug, Default)]
//! struct Counter { events: u64 }
//!
//! impl Projection for Counter {
//!     type Event = serde_json::Value;
//!     fn name(&self) -> &str { "counter" }
//!     async fn handle(&mut self, _tx: &mut (), _event: serde_json::Value, _envelope: &RecordedEvent) -> Result<(), BoxError> {
//!         self.events += 1;
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = InMemoryStore::new();
//! # let payload = serde_json::value::to_raw_value(&serde_json::json!({})).unwrap();
//! # store.append(AppendRequest::new(StreamId::new("s")?, ExpectedVersion::Any, vec![NewEvent::new("E", 1, payload)])).await?;
//! let mut runner = ProjectionRunner::new(store.clone(), InMemoryCheckpoints::new(), Counter::default());
//! runner.catch_up().await?;
//! assert_eq!(runner.projection().events, 1);
//! # Ok(()) }
//! ```

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use tokio::sync::watch;

use crate::envelope::RecordedEvent;
use crate::error::{BoxError, Error};
use crate::event::{DecodeError, EventSet};
use crate::store::EventStore;
use crate::stream::{Position, StreamId, Version};

/// What a projection reads from the global log: which stored names it handles, and how an
/// event of such a name is decoded.
///
/// Implemented for every [`EventSet`] (the event enum of an aggregate), and for
/// [`serde_json::Value`], which handles every name and parses any payload (narrow it with
/// [`Projection::handles`] to read a set of stored names).
pub trait ProjectionEvents: Sized + Send + 'static {
    /// Whether events stored under `name` are handled. Other events are skipped without
    /// being decoded.
    fn handles(name: &str) -> bool;

    /// Decodes a recorded event whose name is handled.
    fn decode(record: &RecordedEvent) -> Result<Self, DecodeError>;
}

impl<E: EventSet> ProjectionEvents for E {
    fn handles(name: &str) -> bool {
        E::handles(name)
    }

    fn decode(record: &RecordedEvent) -> Result<Self, DecodeError> {
        record.decode::<E>()
    }
}

impl ProjectionEvents for serde_json::Value {
    fn handles(_name: &str) -> bool {
        true
    }

    fn decode(record: &RecordedEvent) -> Result<Self, DecodeError> {
        serde_json::from_str(record.payload()).map_err(|source| DecodeError::Malformed {
            name: "(any)",
            version: record.event_version,
            source,
        })
    }
}

/// A read model built from the global log.
///
/// `Tx` is the unit of work of the [`CheckpointStore`] the projection runs with: `()` for
/// [`InMemoryCheckpoints`], a database transaction for a database checkpoint store. A
/// projection that writes only through `tx` has an exactly-once effect; one that writes
/// elsewhere gets at-least-once delivery and should make its handler idempotent with the
/// envelope's position (see the [module docs](self)).
///
/// The handler receives the decoded event and its envelope: the [`RecordedEvent`] it was
/// decoded from, with its position, stream, version, metadata and recorded time.
pub trait Projection<Tx: Send = ()>: Send + 'static {
    /// The events it reads: an aggregate's event enum, or [`serde_json::Value`].
    type Event: ProjectionEvents;

    /// The name its checkpoint is stored under. Two runners of the same name never run at
    /// the same time.
    fn name(&self) -> &str;

    /// Whether events stored under `name` are handled; the others are skipped without
    /// being decoded. Defaults to the names of [`Self::Event`]; override it to narrow them,
    /// for example to a set of stored names.
    fn handles(&self, name: &str) -> bool {
        <Self::Event as ProjectionEvents>::handles(name)
    }

    /// Applies one event to the read model. An error stops the batch: its checkpoint is not
    /// saved, and the runner stops or retries as its [`ErrorPolicy`] says.
    fn handle(
        &mut self,
        tx: &mut Tx,
        event: Self::Event,
        envelope: &RecordedEvent,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// Empties the read model before a rebuild, in the same unit of work that resets the
    /// checkpoint to the start. Does nothing by default.
    fn reset(&mut self, tx: &mut Tx) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = tx;
        async { Ok(()) }
    }
}

/// Why a [`CheckpointStore`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The stored checkpoint was not where this runner left it: another runner of the
    /// same projection moved it. Nothing was saved.
    #[error("the checkpoint was moved by another runner: expected {expected}, found {actual:?}")]
    Moved {
        /// Where this runner left it.
        expected: Position,
        /// Where it is.
        actual: Option<Position>,
    },
    /// The runner no longer holds the projection's lock: another runner took it since
    /// (the connection that held it was lost, say). Nothing was saved; the runner stops,
    /// and the one holding the lock goes on.
    #[error("the lock of projection `{projection}` was lost to another runner")]
    LockLost {
        /// The projection.
        projection: String,
    },
    /// The checkpoint store's own failure.
    #[error("checkpoint store failure: {0}")]
    Store(#[source] BoxError),
}

/// Where projections keep their checkpoints, and the unit of work their handlers write in.
///
/// A batch goes: [`begin`](Self::begin), the handlers, [`save`](Self::save) (compare and
/// set: it fails with [`CheckpointError::Moved`] if the checkpoint is not at `from`, and
/// with [`CheckpointError::LockLost`] if the runner's lock is no longer the current one),
/// [`commit`](Self::commit). A rebuild goes: `begin`, `save(…, Position::START)`,
/// [`Projection::reset`], `commit`. A store whose `Tx` is a real transaction makes the
/// handlers' effects and the checkpoint atomic.
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

    /// Commits the unit of work. Dropping it instead abandons it.
    fn commit(&self, tx: Self::Tx) -> impl Future<Output = Result<(), CheckpointError>> + Send;

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
struct CheckpointState {
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

/// What a runner does when a batch fails: a handler error, an event it handles that does
/// not decode, or a store failure. A failed batch is never skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ErrorPolicy {
    /// Stop the runner with the error. The checkpoint stays before the failed batch.
    #[default]
    Stop,
    /// Retry the batch from the last checkpoint up to `max` times in a row, waiting
    /// `backoff` before the first retry and twice as long before each next one (at most
    /// one minute); then stop with the error. A batch that commits resets the count.
    Retry {
        /// Retries in a row before giving up.
        max: u32,
        /// The wait before the first retry.
        backoff: Duration,
    },
}

impl ErrorPolicy {
    /// The wait before retry number `attempt` (from 1), or `None` to stop.
    fn delay(self, attempt: u32) -> Option<Duration> {
        match self {
            Self::Stop => None,
            Self::Retry { max, backoff } if attempt <= max => {
                let factor = 1u32 << (attempt - 1).min(16);
                Some(backoff.saturating_mul(factor).min(Duration::from_secs(60)))
            }
            Self::Retry { .. } => None,
        }
    }
}

/// Why a projection runner stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError {
    /// The handler failed on an event.
    #[error(
        "projection `{projection}` failed on event {position} (version {version} of stream `{stream}`): {source}"
    )]
    Handler {
        /// The projection.
        projection: String,
        /// The event's position.
        position: Position,
        /// The event's stream.
        stream: StreamId,
        /// The event's version in its stream.
        version: Version,
        /// What the handler returned.
        #[source]
        source: BoxError,
    },
    /// An event the projection handles could not be decoded.
    #[error(
        "projection `{projection}` cannot decode event {position} (version {version} of stream `{stream}`): {source}"
    )]
    Decode {
        /// The projection.
        projection: String,
        /// The event's position.
        position: Position,
        /// The event's stream.
        stream: StreamId,
        /// The event's version in its stream.
        version: Version,
        /// Why it failed.
        #[source]
        source: DecodeError,
    },
    /// The projection's reset hook failed; the rebuild did not happen.
    #[error("projection `{projection}` failed to reset for a rebuild: {source}")]
    Reset {
        /// The projection.
        projection: String,
        /// What the hook returned.
        #[source]
        source: BoxError,
    },
    /// Reading the event store failed.
    #[error("projection `{projection}` failed to read the event store: {source}")]
    Store {
        /// The projection.
        projection: String,
        /// The store's error.
        #[source]
        source: Error,
    },
    /// The checkpoint store failed, or another runner moved the checkpoint.
    #[error("projection `{projection}`: {source}")]
    Checkpoint {
        /// The projection.
        projection: String,
        /// The checkpoint store's error.
        #[source]
        source: CheckpointError,
    },
    /// Another runner of the same projection is running.
    #[error("projection `{projection}` is already running elsewhere")]
    AlreadyRunning {
        /// The projection.
        projection: String,
    },
    /// A handler panicked.
    #[error("projection `{projection}` panicked: {message}")]
    Panicked {
        /// The projection.
        projection: String,
        /// The panic's message, when it had one.
        message: String,
    },
    /// The runner ended before the awaited condition held.
    #[error("projection `{projection}` is not running")]
    NotRunning {
        /// The projection.
        projection: String,
    },
}

impl ProjectionError {
    /// The error of an event the projection handles that does not decode: it names the
    /// projection and the event's position, stream and version.
    pub fn decode(projection: &str, record: &RecordedEvent, source: DecodeError) -> Self {
        Self::Decode {
            projection: projection.to_owned(),
            position: record.position,
            stream: record.stream.clone(),
            version: record.version,
            source,
        }
    }
}

impl ProjectionError {
    /// Whether the error may pass on its own, so that the [`ErrorPolicy`] applies to it.
    /// Another runner holding the projection, or moving its checkpoint, is final.
    fn is_batch_failure(&self) -> bool {
        !matches!(
            self,
            Self::AlreadyRunning { .. }
                | Self::NotRunning { .. }
                | Self::Checkpoint {
                    source: CheckpointError::Moved { .. } | CheckpointError::LockLost { .. },
                    ..
                }
        )
    }
}

/// What a runner is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Phase {
    /// Not started, or done with a [`ProjectionRunner::catch_up`] or
    /// [`ProjectionRunner::rebuild`].
    Idle,
    /// Waiting for another runner of the projection to stop.
    WaitingForLock,
    /// Reading events that are already in the log.
    CatchingUp,
    /// Caught up with the log and waiting for new events.
    Live,
    /// Resetting the read model and its checkpoint.
    Rebuilding,
    /// Waiting before retrying a failed batch.
    Retrying {
        /// The retry about to be made, from 1.
        attempt: u32,
        /// The failure.
        error: String,
    },
    /// Stopped on request.
    Stopped,
    /// Stopped by an error.
    Failed {
        /// The failure.
        error: String,
    },
}

/// A runner's progress and lag.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ProjectionStatus {
    /// The projection.
    pub projection: String,
    /// What the runner is doing.
    pub phase: Phase,
    /// The last committed checkpoint: every event up to it has been handled.
    pub checkpoint: Position,
    /// When the event at the checkpoint was recorded, if the runner has committed one.
    pub last_recorded_at: Option<DateTime<Utc>>,
    /// The head of the store's log when the runner last asked, if the store tells
    /// ([`EventStore::head_position`]).
    pub head: Option<Position>,
    /// Events handled since the runner was made.
    pub handled: u64,
    /// Events skipped (names not handled) since the runner was made.
    pub skipped: u64,
    /// Rebuilds made since the runner was made.
    pub rebuilds: u64,
}

impl ProjectionStatus {
    fn new(projection: String) -> Self {
        Self {
            projection,
            phase: Phase::Idle,
            checkpoint: Position::START,
            last_recorded_at: None,
            head: None,
            handled: 0,
            skipped: 0,
            rebuilds: 0,
        }
    }

    /// Whether the runner has handled every event that was readable when it last looked.
    pub fn is_caught_up(&self) -> bool {
        self.phase == Phase::Live
    }

    /// How far behind the head of the log the checkpoint is, in global sequence numbers:
    /// an estimate of the events left to read (sequence numbers may have gaps), or `None`
    /// if the head is unknown. Zero when caught up.
    pub fn events_behind(&self) -> Option<u64> {
        if self.is_caught_up() {
            return Some(0);
        }
        self.head
            .map(|head| head.sequence.saturating_sub(self.checkpoint.sequence))
    }

    /// How far behind the present the read model is: zero when caught up, otherwise the
    /// age of the last event committed (an upper bound of the lag in time).
    pub fn time_behind(&self) -> Duration {
        if self.is_caught_up() || self.head.is_some_and(|h| h <= self.checkpoint) {
            return Duration::ZERO;
        }
        self.last_recorded_at
            .and_then(|at| (Utc::now() - at).to_std().ok())
            .unwrap_or(Duration::ZERO)
    }
}

/// What the owner of a running projection asks of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Control {
    stop: bool,
    abort: bool,
    rebuilds: u64,
}

/// How a read pass ended.
enum PassEnd {
    /// The log was read to its end; `read` events were read.
    CaughtUp { read: u64 },
    /// The owner asked for something.
    Interrupted,
}

/// What a run does once caught up.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    CatchUp,
    Follow,
}

/// The default number of events per checkpoint commit.
pub const DEFAULT_BATCH_SIZE: usize = 500;
/// The default longest wait for new events before reading the log again.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);
/// The longest pause when the store wakes the runner without new events to read.
const MAX_IDLE_PAUSE: Duration = Duration::from_millis(50);

/// Runs a [`Projection`]: catches up from its checkpoint, then follows the log live.
///
/// ```
/// # use esrs_core::projection::{InMemoryCheckpoints, Projection, ProjectionRunner, ErrorPolicy};
/// # use esrs_core::{BoxError, InMemoryStore, RecordedEvent};
/// # use std::time::Duration;
/// # #[derive(Debug)] struct Counter(u64);
/// # impl Projection for Counter {
/// #     type Event = serde_json::Value;
/// #     fn name(&self) -> &str { "counter" }
/// #     async fn handle(&mut self, _: &mut (), _: serde_json::Value, _: &RecordedEvent) -> Result<(), BoxError> { self.0 += 1; Ok(()) }
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let store = InMemoryStore::new();
/// let running = ProjectionRunner::new(store, InMemoryCheckpoints::new(), Counter(0))
///     .batch_size(1_000)
///     .poll_interval(Duration::from_secs(1))
///     .error_policy(ErrorPolicy::Retry { max: 5, backoff: Duration::from_millis(100) })
///     .spawn();
/// // … the read model follows the log …
/// println!("{:?}", running.status());
/// let runner = running.stop().await?;
/// assert_eq!(runner.projection().0, 0);
/// # Ok(()) }
/// ```
pub struct ProjectionRunner<S, C, P>
where
    C: CheckpointStore,
{
    store: S,
    checkpoints: C,
    projection: P,
    name: String,
    batch_size: usize,
    poll_interval: Duration,
    error_policy: ErrorPolicy,
    lock_wait: Option<Duration>,
    status: watch::Sender<ProjectionStatus>,
}

impl<S, C: CheckpointStore, P> std::fmt::Debug for ProjectionRunner<S, C, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectionRunner")
            .field("projection", &self.name)
            .field("batch_size", &self.batch_size)
            .field("poll_interval", &self.poll_interval)
            .field("error_policy", &self.error_policy)
            .field("lock_wait", &self.lock_wait)
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
}

impl<S, C, P> ProjectionRunner<S, C, P>
where
    S: EventStore,
    C: CheckpointStore,
    P: Projection<C::Tx>,
{
    /// A runner of `projection` over the events of `store`, keeping its checkpoint in
    /// `checkpoints`. Defaults: batches of [`DEFAULT_BATCH_SIZE`] events, a poll every
    /// [`DEFAULT_POLL_INTERVAL`] when the store sends no notification, [`ErrorPolicy::Stop`],
    /// and [`ProjectionError::AlreadyRunning`] if another runner holds the projection.
    pub fn new(store: S, checkpoints: C, projection: P) -> Self {
        let name = projection.name().to_owned();
        Self {
            store,
            checkpoints,
            projection,
            status: watch::Sender::new(ProjectionStatus::new(name.clone())),
            name,
            batch_size: DEFAULT_BATCH_SIZE,
            poll_interval: DEFAULT_POLL_INTERVAL,
            error_policy: ErrorPolicy::Stop,
            lock_wait: None,
        }
    }

    /// Sets how many events are read between two checkpoint commits (at least 1). Larger
    /// batches write fewer checkpoints; but a batch's recorded events are held in memory
    /// while it is handled, a transactional read model keeps one transaction open for the
    /// whole batch, and after a crash an external read model gets up to one batch again.
    pub fn batch_size(mut self, events: usize) -> Self {
        self.batch_size = events.max(1);
        self
    }

    /// Sets the longest wait for new events before the log is read again, in case a
    /// notification is missed.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Sets what happens when a batch fails.
    pub fn error_policy(mut self, policy: ErrorPolicy) -> Self {
        self.error_policy = policy;
        self
    }

    /// Waits for another runner of the projection to stop, trying again every `retry`,
    /// instead of failing with [`ProjectionError::AlreadyRunning`].
    pub fn wait_for_lock(mut self, retry: Duration) -> Self {
        self.lock_wait = Some(retry);
        self
    }

    /// The projection.
    pub fn projection(&self) -> &P {
        &self.projection
    }

    /// The projection, mutably.
    pub fn projection_mut(&mut self) -> &mut P {
        &mut self.projection
    }

    /// The projection, consuming the runner.
    pub fn into_projection(self) -> P {
        self.projection
    }

    /// The event store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The checkpoint store.
    pub fn checkpoints(&self) -> &C {
        &self.checkpoints
    }

    /// The runner's progress and lag.
    pub fn status(&self) -> ProjectionStatus {
        self.status.borrow().clone()
    }

    /// Handles every event readable now after the checkpoint, committing as it goes, and
    /// returns the new checkpoint.
    pub async fn catch_up(&mut self) -> Result<Position, ProjectionError> {
        let (_tx, mut control) = watch::channel(Control::default());
        self.run(&mut control, Mode::CatchUp, false).await?;
        Ok(self.status.borrow().checkpoint)
    }

    /// Empties the read model and its checkpoint ([`Projection::reset`]), then handles the
    /// whole log; returns the new checkpoint.
    pub async fn rebuild(&mut self) -> Result<Position, ProjectionError> {
        let (_tx, mut control) = watch::channel(Control::default());
        self.run(&mut control, Mode::CatchUp, true).await?;
        Ok(self.status.borrow().checkpoint)
    }

    /// Starts following the log on a tokio task: catches up, then handles new events as
    /// they are appended, until stopped or failed.
    pub fn spawn(self) -> RunningProjection<S, C, P>
    where
        S: EventStore,
    {
        let (control, mut receiver) = watch::channel(Control::default());
        let status = self.status.subscribe();
        let name = self.name.clone();
        let task = tokio::spawn(async move {
            let mut runner = self;
            runner
                .run(&mut receiver, Mode::Follow, false)
                .await
                .map(|()| runner)
        });
        RunningProjection {
            name,
            control,
            status,
            task,
        }
    }

    fn set_phase(&self, phase: Phase) {
        self.status.send_modify(|s| s.phase = phase);
    }

    fn checkpoint_error(&self, source: CheckpointError) -> ProjectionError {
        ProjectionError::Checkpoint {
            projection: self.name.clone(),
            source,
        }
    }

    fn store_error(&self, source: Error) -> ProjectionError {
        ProjectionError::Store {
            projection: self.name.clone(),
            source,
        }
    }

    /// Takes the projection's lock, waiting for it if configured. `None` when stopped
    /// while waiting.
    async fn lock(
        &mut self,
        control: &mut watch::Receiver<Control>,
    ) -> Result<Option<C::Lock>, ProjectionError> {
        loop {
            let lock = self
                .checkpoints
                .try_lock(&self.name)
                .await
                .map_err(|e| self.checkpoint_error(e))?;
            if let Some(lock) = lock {
                return Ok(Some(lock));
            }
            let Some(retry) = self.lock_wait else {
                return Err(ProjectionError::AlreadyRunning {
                    projection: self.name.clone(),
                });
            };
            self.set_phase(Phase::WaitingForLock);
            if pause(control, retry).await {
                return Ok(None);
            }
        }
    }

    async fn run(
        &mut self,
        control: &mut watch::Receiver<Control>,
        mode: Mode,
        mut rebuild: bool,
    ) -> Result<(), ProjectionError> {
        let result = self.run_locked(control, mode, &mut rebuild).await;
        match &result {
            Ok(()) if mode == Mode::Follow => self.set_phase(Phase::Stopped),
            Ok(()) => self.set_phase(Phase::Idle),
            Err(e) => self.set_phase(Phase::Failed {
                error: e.to_string(),
            }),
        }
        result
    }

    async fn run_locked(
        &mut self,
        control: &mut watch::Receiver<Control>,
        mode: Mode,
        rebuild: &mut bool,
    ) -> Result<(), ProjectionError> {
        let Some(lock) = self.lock(control).await? else {
            return Ok(());
        };
        // An abort drops the loop wherever it is, like a crash (the unit of work in progress
        // is abandoned, never committed), but the lock is still given back here, so that
        // `abort` returns once the checkpoint store has released it.
        let abort = aborted(control.clone());
        let result = tokio::select! {
            biased;
            () = abort => Ok(()),
            result = self.run_loop(control, &lock, mode, rebuild) => result,
        };
        if let Err(e) = self.checkpoints.unlock(lock).await {
            // The lock goes with its connection or process anyway.
            tracing::warn!(projection = %self.name, error = %e, "failed to release the projection lock");
        }
        result
    }

    async fn run_loop(
        &mut self,
        control: &mut watch::Receiver<Control>,
        lock: &C::Lock,
        mode: Mode,
        rebuild: &mut bool,
    ) -> Result<(), ProjectionError> {
        // From the channel's initial value, so that a rebuild requested before the runner
        // got here (while it waited for its lock, say) is not lost.
        let mut seen = Control::default();
        let mut attempt = 0;
        let mut empty_passes = 0u32;
        let mut loaded = false;
        loop {
            let now = *control.borrow_and_update();
            if now.stop {
                return Ok(());
            }
            if now.rebuilds != seen.rebuilds {
                *rebuild = true;
            }
            seen = now;
            // One pass, then, when following, the wait for new events; true when done.
            let step = async {
                if !loaded {
                    let checkpoint = self
                        .checkpoints
                        .load(&self.name)
                        .await
                        .map_err(|e| self.checkpoint_error(e))?;
                    self.status.send_modify(|s| s.checkpoint = checkpoint);
                    loaded = true;
                }
                if *rebuild {
                    self.reset(lock).await?;
                    *rebuild = false;
                }
                let PassEnd::CaughtUp { read } =
                    self.pass(control, lock, seen, &mut attempt).await?
                else {
                    return Ok(false);
                };
                attempt = 0;
                if mode == Mode::CatchUp {
                    return Ok(true);
                }
                self.set_phase(Phase::Live);
                empty_passes = if read == 0 { empty_passes + 1 } else { 0 };
                if empty_passes > 1 {
                    // The store said events might be readable, but none were: do not spin
                    // on it.
                    let idle =
                        Duration::from_millis(1 << (empty_passes - 2).min(6)).min(MAX_IDLE_PAUSE);
                    if pause(control, idle).await {
                        return Ok(false);
                    }
                }
                let checkpoint = self.status.borrow().checkpoint;
                let wait = self.store.wait_for_events(checkpoint, self.poll_interval);
                tokio::select! {
                    waited = wait => waited.map_err(|e| self.store_error(e))?,
                    () = asked(control) => {}
                }
                Ok::<_, ProjectionError>(false)
            };
            match step.await {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) if e.is_batch_failure() => {
                    attempt += 1;
                    let Some(delay) = self.error_policy.delay(attempt) else {
                        return Err(e);
                    };
                    tracing::warn!(projection = %self.name, attempt, error = %e, "projection batch failed; retrying");
                    self.set_phase(Phase::Retrying {
                        attempt,
                        error: e.to_string(),
                    });
                    if pause(control, delay).await {
                        return Ok(());
                    }
                    // The failed commit may or may not have happened: read it back.
                    loaded = false;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Resets the read model and its checkpoint in one unit of work.
    async fn reset(&mut self, lock: &C::Lock) -> Result<(), ProjectionError> {
        self.set_phase(Phase::Rebuilding);
        let from = self.status.borrow().checkpoint;
        let mut tx = self
            .checkpoints
            .begin()
            .await
            .map_err(|e| self.checkpoint_error(e))?;
        self.checkpoints
            .save(&mut tx, lock, &self.name, from, Position::START)
            .await
            .map_err(|e| self.checkpoint_error(e))?;
        self.projection
            .reset(&mut tx)
            .await
            .map_err(|source| ProjectionError::Reset {
                projection: self.name.clone(),
                source,
            })?;
        self.checkpoints
            .commit(tx)
            .await
            .map_err(|e| self.checkpoint_error(e))?;
        self.status.send_modify(|s| {
            s.checkpoint = Position::START;
            s.last_recorded_at = None;
            s.rebuilds += 1;
        });
        tracing::info!(projection = %self.name, "projection reset for a rebuild");
        Ok(())
    }

    /// Reads the log after the checkpoint to its end, in batches, each committed with its
    /// checkpoint. Returns early, after committing the events handled so far, when the
    /// owner asks for something.
    ///
    /// A batch is read before its unit of work begins, so no transaction of the runner is
    /// open while the log is read: a store that holds readers back behind open writing
    /// transactions (PostgreSQL's commit-safe order) is never held back by the runner
    /// itself. Only one batch of recorded events is in memory at a time.
    async fn pass(
        &mut self,
        control: &watch::Receiver<Control>,
        lock: &C::Lock,
        seen: Control,
        attempt: &mut u32,
    ) -> Result<PassEnd, ProjectionError> {
        let Self {
            store,
            checkpoints,
            projection,
            name,
            batch_size,
            status,
            ..
        } = self;
        let mut checkpoint = status.borrow().checkpoint;
        let mut events = store.read_all(checkpoint);
        let mut read = 0u64;
        let mut batch: Vec<RecordedEvent> = Vec::with_capacity((*batch_size).min(4096));
        loop {
            let mut end = None;
            batch.clear();
            while batch.len() < *batch_size {
                if interrupted(control, seen) {
                    end = Some(PassEnd::Interrupted);
                    break;
                }
                let Some(record) = events.next().await else {
                    end = Some(PassEnd::CaughtUp { read });
                    break;
                };
                let record = record.map_err(|source| ProjectionError::Store {
                    projection: name.clone(),
                    source,
                })?;
                if read == 0 {
                    status.send_modify(|s| s.phase = Phase::CatchingUp);
                }
                read += 1;
                batch.push(record);
            }

            let mut tx = None;
            let mut last = checkpoint;
            let mut last_at = None;
            let (mut handled, mut skipped) = (0u64, 0u64);
            for record in &batch {
                if interrupted(control, seen) {
                    // Commit what was handled, and leave the rest for the next pass.
                    end = Some(PassEnd::Interrupted);
                    break;
                }
                if projection.handles(&record.name) {
                    let event = <P::Event as ProjectionEvents>::decode(record)
                        .map_err(|source| ProjectionError::decode(name, record, source))?;
                    if tx.is_none() {
                        tx = Some(checkpoints.begin().await.map_err(|source| {
                            ProjectionError::Checkpoint {
                                projection: name.clone(),
                                source,
                            }
                        })?);
                    }
                    if let Some(tx) = tx.as_mut() {
                        projection
                            .handle(tx, event, record)
                            .await
                            .map_err(|source| ProjectionError::Handler {
                                projection: name.clone(),
                                position: record.position,
                                stream: record.stream.clone(),
                                version: record.version,
                                source,
                            })?;
                    }
                    handled += 1;
                } else {
                    skipped += 1;
                }
                last = record.position;
                last_at = Some(record.recorded_at);
            }

            if last != checkpoint {
                let checkpoint_error = |source| ProjectionError::Checkpoint {
                    projection: name.clone(),
                    source,
                };
                let mut tx = match tx {
                    Some(tx) => tx,
                    None => checkpoints.begin().await.map_err(checkpoint_error)?,
                };
                checkpoints
                    .save(&mut tx, lock, name, checkpoint, last)
                    .await
                    .map_err(checkpoint_error)?;
                checkpoints.commit(tx).await.map_err(checkpoint_error)?;
                checkpoint = last;
                *attempt = 0;
                status.send_modify(|s| {
                    s.checkpoint = checkpoint;
                    s.last_recorded_at = last_at.or(s.last_recorded_at);
                    s.handled += handled;
                    s.skipped += skipped;
                });
                // The head only feeds the lag report: a failure to read it must not stop a
                // runner whose batch is committed.
                match store.head_position().await {
                    Ok(head) => status.send_modify(|s| s.head = head.or(s.head)),
                    Err(error) => {
                        tracing::debug!(projection = %name, %error, "cannot read the head of the log")
                    }
                }
            }
            if let Some(end) = end {
                return Ok(end);
            }
        }
    }
}

/// Whether the runner was asked to stop or rebuild since its pass began with `seen`: a
/// version check first (an atomic load, cheap enough for every event), the value only when
/// something was sent.
///
/// An abort is not an interruption: it drops the runner where it is, without committing.
fn interrupted(control: &watch::Receiver<Control>, seen: Control) -> bool {
    control.has_changed().unwrap_or(true) && {
        let now = *control.borrow();
        now.stop != seen.stop || now.rebuilds != seen.rebuilds
    }
}

/// A projection runner running on a tokio task, made by [`ProjectionRunner::spawn`].
///
/// Dropping the handle detaches the runner: it goes on following the log as before (it
/// waits for new events, it does not spin), until it fails or the runtime shuts down, and
/// nothing can stop it or ask it for a rebuild any more. [`stop`](Self::stop) it to end it
/// cleanly.
pub struct RunningProjection<S, C, P>
where
    C: CheckpointStore,
{
    name: String,
    control: watch::Sender<Control>,
    status: watch::Receiver<ProjectionStatus>,
    task: tokio::task::JoinHandle<Result<ProjectionRunner<S, C, P>, ProjectionError>>,
}

impl<S, C: CheckpointStore, P> std::fmt::Debug for RunningProjection<S, C, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningProjection")
            .field("projection", &self.name)
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
}

impl<S, C, P> RunningProjection<S, C, P>
where
    S: EventStore,
    C: CheckpointStore,
    P: Projection<C::Tx>,
{
    /// The runner's progress and lag now.
    pub fn status(&self) -> ProjectionStatus {
        self.status.borrow().clone()
    }

    /// A receiver of every change of the status.
    pub fn subscribe(&self) -> watch::Receiver<ProjectionStatus> {
        self.status.clone()
    }

    /// Waits until the checkpoint is at or after `position`, so that the read model shows
    /// every event up to it (for example the `last_position` of an append), or fails with
    /// [`ProjectionError::NotRunning`] if the runner ends first.
    pub async fn wait_for(&self, position: Position) -> Result<(), ProjectionError> {
        let mut status = self.status.clone();
        let reached = status
            .wait_for(|s| {
                s.checkpoint >= position || matches!(s.phase, Phase::Stopped | Phase::Failed { .. })
            })
            .await
            .map(|s| s.checkpoint >= position);
        match reached {
            Ok(true) => Ok(()),
            _ => Err(ProjectionError::NotRunning {
                projection: self.name.clone(),
            }),
        }
    }

    /// Waits until the runner is caught up with the log.
    pub async fn wait_caught_up(&self) -> Result<(), ProjectionError> {
        let mut status = self.status.clone();
        let live = status
            .wait_for(|s| matches!(s.phase, Phase::Live | Phase::Stopped | Phase::Failed { .. }))
            .await
            .map(|s| s.is_caught_up());
        match live {
            Ok(true) => Ok(()),
            _ => Err(ProjectionError::NotRunning {
                projection: self.name.clone(),
            }),
        }
    }

    /// Asks the runner to rebuild the read model from the start of the log: the batch in
    /// progress is committed, the read model and its checkpoint are reset, and the runner
    /// catches up again. Returns at once; [`ProjectionStatus::rebuilds`] counts the
    /// rebuilds done.
    pub fn request_rebuild(&self) {
        self.control.send_modify(|c| c.rebuilds += 1);
    }

    /// Whether the task has ended (stopped or failed).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops the runner after the event in progress, commits the events handled so far,
    /// and returns the runner, to inspect its projection or spawn it again.
    pub async fn stop(self) -> Result<ProjectionRunner<S, C, P>, ProjectionError> {
        self.control.send_modify(|c| c.stop = true);
        self.join().await
    }

    /// Waits for the runner to end by itself, which it does only on an error.
    pub async fn join(self) -> Result<ProjectionRunner<S, C, P>, ProjectionError> {
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(ProjectionError::Panicked {
                projection: self.name,
                message: panic_message(e),
            }),
        }
    }

    /// Ends the runner at once, like a crash: the batch in progress is abandoned, not
    /// committed. Returns once the task is gone and its lock given back through
    /// [`CheckpointStore::unlock`], so that a runner started next can take it.
    pub async fn abort(self) {
        self.control.send_modify(|c| c.abort = true);
        // The task's outcome (an error it returned first, say) is dropped with it.
        let _ = self.task.await;
    }
}

/// Sleeps for `duration`, waking early when the owner asks for something; true if it asked
/// to stop.
async fn pause(control: &mut watch::Receiver<Control>, duration: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(duration) => {}
        () = asked(control) => {}
    }
    let now = *control.borrow();
    now.stop || now.abort
}

/// Waits until the owner asks for something. Once the owner is gone (the
/// [`RunningProjection`] handle was dropped, which leaves the runner running) nothing can
/// be asked any more: it never returns, instead of returning at once on every call.
async fn asked(control: &mut watch::Receiver<Control>) {
    if control.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Waits until the owner asks the runner to abort; never, once the owner is gone.
async fn aborted(mut control: watch::Receiver<Control>) {
    if control.wait_for(|c| c.abort).await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn panic_message(error: tokio::task::JoinError) -> String {
    match error.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_owned()),
        Err(e) => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_policy_backs_off_and_gives_up() {
        let policy = ErrorPolicy::Retry {
            max: 3,
            backoff: Duration::from_millis(10),
        };
        assert_eq!(policy.delay(1), Some(Duration::from_millis(10)));
        assert_eq!(policy.delay(2), Some(Duration::from_millis(20)));
        assert_eq!(policy.delay(3), Some(Duration::from_millis(40)));
        assert_eq!(policy.delay(4), None);
        assert_eq!(ErrorPolicy::Stop.delay(1), None);
        let long = ErrorPolicy::Retry {
            max: 100,
            backoff: Duration::from_secs(1),
        };
        assert_eq!(long.delay(40), Some(Duration::from_secs(60)));
    }

    #[test]
    fn lag_is_zero_when_caught_up_and_estimated_otherwise() {
        let mut status = ProjectionStatus::new("p".into());
        status.checkpoint = Position::new(3, 10);
        status.head = Some(Position::new(9, 25));
        status.phase = Phase::CatchingUp;
        status.last_recorded_at = Some(Utc::now() - chrono::Duration::seconds(30));
        assert_eq!(status.events_behind(), Some(15));
        assert!(status.time_behind() >= Duration::from_secs(29));
        status.phase = Phase::Live;
        assert_eq!(status.events_behind(), Some(0));
        assert_eq!(status.time_behind(), Duration::ZERO);
    }

    #[tokio::test]
    async fn in_memory_checkpoints_compare_and_set() {
        let cps = InMemoryCheckpoints::new();
        assert_eq!(cps.load("p").await.unwrap(), Position::START);
        let held = cps.try_lock("p").await.unwrap().unwrap();
        cps.save(&mut (), &held, "p", Position::START, Position::new(1, 1))
            .await
            .unwrap();
        let err = cps
            .save(&mut (), &held, "p", Position::START, Position::new(2, 2))
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            CheckpointError::Moved { expected, actual: Some(actual) }
                if expected == Position::START && actual == Position::new(1, 1)
        ));
        assert_eq!(cps.get("p"), Some(Position::new(1, 1)));
        drop(held);
        let lock = cps.try_lock("p").await.unwrap().unwrap();
        assert!(cps.try_lock("p").await.unwrap().is_none());
        assert!(cps.try_lock("q").await.unwrap().is_some());
        drop(lock);
        assert!(cps.try_lock("p").await.unwrap().is_some());
    }
}
