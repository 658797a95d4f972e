//! The runner: reads the global log after the checkpoint in batches, hands events to the
//! projection, commits the checkpoint, and follows the log live.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::watch;
use tracing::Instrument;

use crate::envelope::RecordedEvent;
use crate::error::{Error, ErrorChain};
use crate::metrics::ProjectionKeys;
use crate::personal::{KeyRing, KeyStore, subjects_in};
use crate::position::Position;
use crate::store::{EventStore, LogEntry, Shard};

use super::control::{Control, aborted, asked, interrupted, pause};
use super::*;

/// How a read pass ended.
pub(super) enum PassEnd {
    /// The log was read to its end; `read` events were read.
    CaughtUp { read: u64 },
    /// The owner asked for something.
    Interrupted,
}

/// What a run does once caught up.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    CatchUp,
    Follow,
}

/// The default number of events per checkpoint commit.
pub const DEFAULT_BATCH_SIZE: usize = 500;
/// The default longest wait for new events before reading the log again.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);
/// The longest pause when the store wakes the runner without new events to read.
pub(super) const MAX_IDLE_PAUSE: Duration = Duration::from_millis(50);
/// How often, at most, a runner catching up reads the head of the log for its lag report
/// (a query on a database store): after the first committed batch of a pass, then after a
/// batch at least this long after the last read, after one that reaches the head it
/// knows, and after the last batch of the pass.
const HEAD_REFRESH: Duration = Duration::from_millis(100);

/// The name the checkpoint and lock of `shard` of `projection` are kept under: the
/// projection's name for the whole projection (shard `0/1`), else `name#index/count`, as in
/// `balances#2/8`.
pub fn shard_name(projection: &str, shard: Shard) -> String {
    if shard.count() == 1 {
        projection.to_owned()
    } else {
        format!("{projection}#{}/{}", shard.index(), shard.count())
    }
}

/// Runs a [`Projection`]: catches up from its checkpoint, then follows the log live.
///
/// ```
/// # use esrs_core::projection::{ErrorPolicy, InMemoryCheckpoints};
/// # use esrs_core::{BoxError, InMemoryStore, Projection, ProjectionRunner, RecordedEvent};
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
    metrics: ProjectionKeys,
    keys: Option<Arc<dyn KeyStore>>,
    shard: Option<Shard>,
    /// Where a catch-up stops: the events after it are left for later (a reshard catches
    /// every shard up to one position).
    until: Option<Position>,
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
            metrics: ProjectionKeys::new(&name),
            name,
            batch_size: DEFAULT_BATCH_SIZE,
            poll_interval: DEFAULT_POLL_INTERVAL,
            error_policy: ErrorPolicy::Stop,
            lock_wait: None,
            keys: None,
            shard: None,
            until: None,
        }
    }

    /// Runs one shard of the projection: the runner reads only the events of the streams of
    /// `shard` (filtered by the store), and keeps its own checkpoint and lock, under the name
    /// [`shard_name`]`(name, shard)`. The shards of a projection run side by side, in one
    /// process or several, each keeping the order of every stream; see
    /// [`ShardedRunner`](crate::projection::ShardedRunner), which runs them all. Shard `0/1`
    /// is the whole projection, under its own name.
    pub fn shard(mut self, shard: Shard) -> Self {
        self.name = shard_name(self.projection.name(), shard);
        self.status = watch::Sender::new(ProjectionStatus::new(self.name.clone()));
        self.metrics = ProjectionKeys::new(&self.name);
        self.shard = Some(shard);
        self
    }

    /// The shard the runner runs, if it runs one ([`shard`](Self::shard)).
    pub fn shard_of(&self) -> Option<Shard> {
        self.shard
    }

    /// The name the runner keeps its checkpoint and lock under: the projection's name, or
    /// its shard's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Decrypts the events' personal fields (`#[event(personal)]`) with the keys of `keys`;
    /// a forgotten subject's fields reach the projection as
    /// [`Personal::Forgotten`](crate::personal::Personal::Forgotten), so a rebuild shows the redaction.
    /// Without a key store, an event holding personal data stops the runner with
    /// [`DecodeError::PersonalData`](crate::DecodeError::PersonalData).
    pub fn with_key_store(mut self, keys: impl KeyStore) -> Self {
        self.keys = Some(Arc::new(keys));
        self
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
        let span = tracing::debug_span!("esrs.projection", projection = %name);
        let task = tokio::spawn(
            async move {
                let mut runner = self;
                runner
                    .run(&mut receiver, Mode::Follow, false)
                    .await
                    .map(|()| runner)
            }
            .instrument(span),
        );
        RunningProjection {
            name,
            control,
            status,
            task,
        }
    }

    /// Makes a catch-up stop at `until`: the events after it are left for later.
    pub(super) fn until(&mut self, until: Option<Position>) {
        self.until = until;
    }

    /// A receiver of every change of the status.
    pub(super) fn subscribe_status(&self) -> watch::Receiver<ProjectionStatus> {
        self.status.subscribe()
    }

    pub(super) fn set_phase(&self, phase: Phase) {
        self.status.send_modify(|s| s.phase = phase);
    }

    fn checkpoint_error(&self, source: CheckpointError) -> ProjectionError {
        ProjectionError::Checkpoint {
            projection: self.name.clone(),
            source,
        }
    }

    fn store_error(&self, source: Error) -> ProjectionError {
        ProjectionError::EventStore {
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

    pub(super) async fn run(
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
                error: ErrorChain::new(e).to_string(),
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
        self.metrics.lock_held(true);
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
            tracing::warn!(projection = %self.name, error = %ErrorChain::new(&e), "failed to release the projection lock");
        }
        self.metrics.lock_held(false);
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
                    super::reaction::handlers(self.pass(control, lock, seen, &mut attempt)).await?
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
                        self.metrics.error(false);
                        return Err(e);
                    };
                    self.metrics.error(true);
                    tracing::warn!(projection = %self.name, attempt, error = %ErrorChain::new(&e), "projection batch failed; retrying");
                    self.set_phase(Phase::Retrying {
                        attempt,
                        error: ErrorChain::new(&e).to_string(),
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
        let reset = async {
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
                })
        }
        .await;
        if let Err(error) = reset {
            self.checkpoints.rollback(tx).await;
            return Err(error);
        }
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
            metrics,
            keys,
            shard,
            until,
            ..
        } = self;
        let until = *until;
        let mut checkpoint = status.borrow().checkpoint;
        let filter = match shard {
            Some(shard) => projection.filter().in_shard(*shard),
            None => projection.filter(),
        };
        let mut events = store.read_log(checkpoint, &filter);
        let mut read = 0u64;
        // When this pass last read the head, and whether a batch was committed since.
        let mut head_read: Option<Instant> = None;
        let mut head_stale = false;
        let mut batch: Vec<RecordedEvent> = Vec::with_capacity((*batch_size).min(4096));
        loop {
            let span = tracing::debug_span!(
                "esrs.projection.batch",
                projection = %name,
                after = %checkpoint,
                events = tracing::field::Empty,
            );
            // The batch's unit of work, once a handler needs it; abandoned through the
            // store if the batch fails.
            let mut tx: Option<C::Tx> = None;
            let end = async {
                let started = Instant::now();
                let mut end = None;
                // How far the read got past the batch's events (skipped events, or the end
                // of a bounded catch-up).
                let mut through = None;
                batch.clear();
                while batch.len() < *batch_size {
                    if interrupted(control, seen) {
                        end = Some(PassEnd::Interrupted);
                        break;
                    }
                    let Some(entry) = events.next().await else {
                        end = Some(PassEnd::CaughtUp { read });
                        break;
                    };
                    let entry = entry.map_err(|source| ProjectionError::EventStore {
                        projection: name.clone(),
                        source,
                    })?;
                    if let Some(until) = until.filter(|until| entry.position() > *until) {
                        // Every event up to `until` has been read.
                        through = Some(until);
                        end = Some(PassEnd::CaughtUp { read });
                        break;
                    }
                    if read == 0 {
                        status.send_modify(|s| s.phase = Phase::CatchingUp);
                    }
                    read += 1;
                    match entry {
                        LogEntry::Event(record) => {
                            through = None;
                            batch.push(record);
                        }
                        LogEntry::Through(position) => through = Some(position),
                    }
                }
                tracing::Span::current().record("events", batch.len());

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
                        let subjects = match keys {
                            Some(_) => subjects_in(&record.payload),
                            None => Vec::new(),
                        };
                        let decoded = match keys.as_deref() {
                            Some(keys) if !subjects.is_empty() => {
                                let ring = KeyRing::for_reading(keys, &subjects).await.map_err(
                                    |source| ProjectionError::EventStore {
                                        projection: name.clone(),
                                        source: Error::KeyStore(source),
                                    },
                                )?;
                                ring.scope_decode(&record.stream, &record.name, || {
                                    <P::Event as ProjectionEvents>::decode(record)
                                })
                            }
                            _ => <P::Event as ProjectionEvents>::decode(record),
                        };
                        let event = decoded
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
                            super::reaction::handling(record);
                            projection
                                .handle(tx, event, record)
                                .await
                                .map_err(|source| ProjectionError::handler(name, record, source))?;
                        }
                        handled += 1;
                    } else {
                        skipped += 1;
                    }
                    last = record.position;
                    last_at = Some(record.recorded_at);
                }
                // Past the skipped events too, once every event of the batch is handled.
                if !matches!(end, Some(PassEnd::Interrupted)) {
                    last = through.map_or(last, |through| through.max(last));
                }

                let committed = last != checkpoint;
                if committed {
                    let checkpoint_error = |source| ProjectionError::Checkpoint {
                        projection: name.clone(),
                        source,
                    };
                    if tx.is_none() {
                        tx = Some(checkpoints.begin().await.map_err(checkpoint_error)?);
                    }
                    if let Some(unit) = tx.as_mut() {
                        checkpoints
                            .save(unit, lock, name, checkpoint, last)
                            .await
                            .map_err(checkpoint_error)?;
                    }
                    if let Some(unit) = tx.take() {
                        checkpoints.commit(unit).await.map_err(checkpoint_error)?;
                    }
                    checkpoint = last;
                    *attempt = 0;
                    status.send_modify(|s| {
                        s.checkpoint = checkpoint;
                        s.last_recorded_at = last_at.or(s.last_recorded_at);
                        s.handled += handled;
                        s.skipped += skipped;
                    });
                    metrics.batch(handled, skipped, started.elapsed(), checkpoint.sequence);
                }
                head_stale |= committed;
                let head_due = head_stale
                    && (end.is_some()
                        || head_read.is_none_or(|at| at.elapsed() >= HEAD_REFRESH)
                        || status.borrow().head.is_none_or(|head| head <= checkpoint));
                if head_due {
                    // The head only feeds the lag report: a failure to read it must not stop
                    // a runner whose batch is committed.
                    match store.head_position().await {
                        Ok(head) => status.send_modify(|s| s.head = head.or(s.head)),
                        Err(error) => {
                            tracing::debug!(projection = %name, error = %ErrorChain::new(&error), "cannot read the head of the log")
                        }
                    }
                    head_read = Some(Instant::now());
                    head_stale = false;
                }
                if committed {
                    let status = status.borrow();
                    metrics.lag(status.events_behind(), status.time_behind());
                }
                if let Some(PassEnd::CaughtUp { .. }) = end {
                    metrics.lag(Some(0), Duration::ZERO);
                }
                Ok::<_, ProjectionError>(end)
            }
            .instrument(span)
            .await;
            let end = match end {
                Ok(end) => end,
                Err(error) => {
                    if let Some(tx) = tx.take() {
                        checkpoints.rollback(tx).await;
                    }
                    return Err(error);
                }
            };
            if let Some(end) = end {
                return Ok(end);
            }
        }
    }
}
