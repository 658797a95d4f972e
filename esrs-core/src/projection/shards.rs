//! Sharded projections: one projection run as N shards, each owning the streams of its
//! [`Shard`], shared by any number of processes; and the change of the number of shards.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::try_join_all;
use tokio::sync::{Semaphore, watch};
use tracing::Instrument;

use crate::error::ErrorChain;
use crate::position::Position;
use crate::store::{EventStore, Shard};

use super::control::{Control, asked, pause};
use super::runner::{Mode, shard_name};
use super::running::panic_message;
use super::*;

/// How often a process tries again to take a shard that another process holds, by default.
pub const DEFAULT_TAKEOVER_INTERVAL: Duration = Duration::from_secs(1);

type Configure<S, C, P> =
    Arc<dyn Fn(ProjectionRunner<S, C, P>) -> ProjectionRunner<S, C, P> + Send + Sync>;

/// Runs a projection as `count` shards, for read models that need more than one core or
/// one process to keep up.
///
/// Each shard reads the events of its own streams ([`Shard`]: a stable hash of the stream
/// id), in log order, so the order of every stream holds; it keeps its own checkpoint and
/// its own lock, under the name [`shard_name`]`(name, shard)` (`balances#2/8`). The shards
/// run side by side: a read model that needs ordering only per stream (the common case)
/// gets up to `count`-fold parallelism, until the database or the cores are the limit.
///
/// Any number of processes run the same sharded projection: each one takes the shards no
/// one holds (at most [`max_owned`](Self::max_owned) of them), and tries the others again
/// every [`takeover_interval`](Self::takeover_interval), so that the shards of a process
/// that dies (its locks go with its connections) are taken over by the others. The
/// delivery guarantee is the checkpoint store's, per shard: with `PgCheckpoints` and a read
/// model written in the shard's transaction, every event is applied exactly once.
///
/// `make` makes the projection of each shard. A shard's [`Projection::reset`] (a rebuild)
/// must empty only the shard's part of the read model: the rows of its streams.
///
/// # Changing the number of shards
///
/// The checkpoints of one layout say nothing of another's, so starting a projection with a
/// new count would apply events twice or miss them. [`reshard`](Self::reshard) moves a
/// projection from one count to another exactly: stop every runner of the projection (of
/// the old layout), call `reshard` on the new one, then start the new layout's runners.
///
/// ```
/// use esrs_core::projection::{InMemoryCheckpoints, ShardedRunner};
/// use esrs_core::{BoxError, InMemoryStore, Projection, RecordedEvent};
///
/// /// Counts the events of each shard.
/// struct Counter { events: u64 }
///
/// impl Projection for Counter {
///     type Event = serde_json::Value;
///     fn name(&self) -> &str { "counter" }
///     async fn handle(&mut self, _: &mut (), _: serde_json::Value, _: &RecordedEvent) -> Result<(), BoxError> {
///         self.events += 1;
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = InMemoryStore::new();
/// let shards = ShardedRunner::new(store, InMemoryCheckpoints::new(), 4, |_shard| Counter { events: 0 })
///     .configure(|runner| runner.batch_size(1_000));
/// let running = shards.spawn();
/// // … each shard follows the log of its streams …
/// assert_eq!(running.shards().len(), 4);
/// let counters = running.stop().await?;
/// assert_eq!(counters.iter().map(|c| c.events).sum::<u64>(), 0);
/// # Ok(()) }
/// ```
pub struct ShardedRunner<S, C, P>
where
    C: CheckpointStore,
{
    store: S,
    checkpoints: C,
    make: Arc<dyn Fn(Shard) -> P + Send + Sync>,
    count: u32,
    max_owned: Option<usize>,
    takeover_interval: Duration,
    configure: Option<Configure<S, C, P>>,
}

impl<S, C: CheckpointStore, P> std::fmt::Debug for ShardedRunner<S, C, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardedRunner")
            .field("count", &self.count)
            .field("max_owned", &self.max_owned)
            .field("takeover_interval", &self.takeover_interval)
            .finish_non_exhaustive()
    }
}

impl<S, C, P> ShardedRunner<S, C, P>
where
    S: EventStore + Clone,
    C: CheckpointStore + Clone,
    P: Projection<C::Tx>,
{
    /// The `count` shards (at least 1) of the projections `make` makes, over `store`, with
    /// their checkpoints in `checkpoints`. Defaults: every shard this process can take, and
    /// another try every [`DEFAULT_TAKEOVER_INTERVAL`].
    pub fn new(
        store: S,
        checkpoints: C,
        count: u32,
        make: impl Fn(Shard) -> P + Send + Sync + 'static,
    ) -> Self {
        Self {
            store,
            checkpoints,
            make: Arc::new(make),
            count: count.max(1),
            max_owned: None,
            takeover_interval: DEFAULT_TAKEOVER_INTERVAL,
            configure: None,
        }
    }

    /// Runs at most `shards` shards in this process at a time (at least 1), leaving the
    /// others to other processes: with 8 shards over 4 processes, 2 or 3 each balances the
    /// work and leaves room to take over the shards of a process that dies.
    pub fn max_owned(mut self, shards: usize) -> Self {
        self.max_owned = Some(shards.max(1));
        self
    }

    /// Sets how often a shard held by another process is tried again.
    pub fn takeover_interval(mut self, interval: Duration) -> Self {
        self.takeover_interval = interval;
        self
    }

    /// Applies `configure` to each shard's [`ProjectionRunner`]: its batch size, poll
    /// interval, error policy, key store.
    pub fn configure(
        mut self,
        configure: impl Fn(ProjectionRunner<S, C, P>) -> ProjectionRunner<S, C, P>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.configure = Some(Arc::new(configure));
        self
    }

    /// The number of shards.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The shards, in order.
    pub fn shards(&self) -> Vec<Shard> {
        (0..self.count)
            .filter_map(|index| Shard::new(index, self.count).ok())
            .collect()
    }

    fn runner(&self, shard: Shard) -> ProjectionRunner<S, C, P> {
        let runner = ProjectionRunner::new(
            self.store.clone(),
            self.checkpoints.clone(),
            (self.make)(shard),
        )
        .shard(shard);
        match &self.configure {
            Some(configure) => configure(runner),
            None => runner,
        }
    }

    /// Catches every shard up with the log, side by side in this process, and returns their
    /// checkpoints; fails with [`ProjectionError::AlreadyRunning`] if another runner holds
    /// one.
    pub async fn catch_up(&self) -> Result<Vec<Position>, ProjectionError> {
        try_join_all(self.shards().into_iter().map(|shard| {
            let mut runner = self.runner(shard);
            async move { runner.catch_up().await }
        }))
        .await
    }

    /// Rebuilds every shard ([`ProjectionRunner::rebuild`]: each shard's read model part
    /// and checkpoint are reset, then the shard reads the log again), side by side in this
    /// process; returns their checkpoints.
    pub async fn rebuild(&self) -> Result<Vec<Position>, ProjectionError> {
        try_join_all(self.shards().into_iter().map(|shard| {
            let mut runner = self.runner(shard);
            async move { runner.rebuild().await }
        }))
        .await
    }

    /// Moves the projection from `from` shards to this runner's count, so that the new
    /// shards go on exactly where the old ones left off: no event lost, none applied twice.
    /// Every runner of the projection must be stopped first.
    ///
    /// The old shards are caught up to the farthest of their checkpoints, `P` (each one
    /// applies the events of its streams up to `P`, and no further); then every new shard's
    /// checkpoint is set to `P`. Every event up to `P` has then been applied by the old
    /// shard of its stream, and every later one will be by the new shard of its stream.
    /// Returns `P`.
    ///
    /// Fails with [`ProjectionError::AlreadyRunning`] if a runner of either layout holds
    /// its shard, and with [`ProjectionError::ShardLayout`] if a new shard already has a
    /// checkpoint other than `P` (the new layout has run, or a reshard to it was made from
    /// another position). A reshard that fails part-way can be run again.
    pub async fn reshard(&self, from: u32) -> Result<Position, ProjectionError> {
        let name = (self.make)(Shard::new(0, 1).expect("shard 0 of 1 exists"))
            .name()
            .to_owned();
        let old: Vec<Shard> = (0..from.max(1))
            .filter_map(|index| Shard::new(index, from.max(1)).ok())
            .collect();
        let checkpoint_error = |shard: Shard| {
            let projection = shard_name(&name, shard);
            move |source| ProjectionError::Checkpoint {
                projection: projection.clone(),
                source,
            }
        };
        let mut until = Position::START;
        for &shard in &old {
            let at = self
                .checkpoints
                .load(&shard_name(&name, shard))
                .await
                .map_err(checkpoint_error(shard))?;
            until = until.max(at);
        }
        for &shard in &old {
            let mut runner = self.runner(shard);
            runner.until(Some(until));
            let at = runner.catch_up().await?;
            if at != until {
                return Err(ProjectionError::ShardLayout {
                    projection: shard_name(&name, shard),
                    reason: format!("the old shard got to {at}, not to {until}"),
                });
            }
        }
        if from.max(1) == self.count {
            return Ok(until);
        }
        for shard in self.shards() {
            let shard_name = shard_name(&name, shard);
            let error = checkpoint_error(shard);
            let Some(lock) = self
                .checkpoints
                .try_lock(&shard_name)
                .await
                .map_err(&error)?
            else {
                return Err(ProjectionError::AlreadyRunning {
                    projection: shard_name,
                });
            };
            let result = async {
                let at = self.checkpoints.load(&shard_name).await.map_err(&error)?;
                if at == until {
                    return Ok(());
                }
                if at != Position::START {
                    return Err(ProjectionError::ShardLayout {
                        projection: shard_name.clone(),
                        reason: format!(
                            "the new shard already has a checkpoint, at {at}, and the old shards are at {until}"
                        ),
                    });
                }
                let mut tx = self.checkpoints.begin().await.map_err(&error)?;
                let saved = self
                    .checkpoints
                    .save(&mut tx, &lock, &shard_name, Position::START, until)
                    .await;
                if let Err(e) = saved {
                    self.checkpoints.rollback(tx).await;
                    return Err(error(e));
                }
                self.checkpoints.commit(tx).await.map_err(&error)
            }
            .await;
            if let Err(e) = self.checkpoints.unlock(lock).await {
                tracing::warn!(projection = %shard_name, error = %ErrorChain::new(&e), "failed to release the projection lock");
            }
            result?;
        }
        tracing::info!(projection = %name, from, to = self.count, at = %until, "projection resharded");
        Ok(until)
    }

    /// Starts this process's share of the shards on tokio tasks: each shard's task takes
    /// the shard when it is free (and this process holds fewer than
    /// [`max_owned`](Self::max_owned)), follows the log with it, and, when another process
    /// holds it, tries again every [`takeover_interval`](Self::takeover_interval).
    pub fn spawn(self) -> RunningShards<P> {
        let (control, receiver) = watch::channel(Control::default());
        let permits = Arc::new(Semaphore::new(
            self.max_owned.unwrap_or(self.count as usize),
        ));
        let mut shards = Vec::new();
        let mut tasks = Vec::new();
        for shard in self.shards() {
            let runner = self.runner(shard);
            let name = runner.name().to_owned();
            shards.push(ShardHandle {
                shard,
                name: name.clone(),
                status: runner.subscribe_status(),
            });
            let span = tracing::debug_span!("esrs.projection.shard", projection = %name);
            let task = tokio::spawn(
                own_shard(
                    runner,
                    receiver.clone(),
                    permits.clone(),
                    self.takeover_interval,
                )
                .instrument(span),
            );
            tasks.push(task);
        }
        RunningShards {
            control,
            shards,
            tasks,
        }
    }
}

/// A shard's task: takes a permit and the shard's lock, runs the shard until stopped, and
/// goes back to waiting when another process holds the shard or took it over.
async fn own_shard<S, C, P>(
    mut runner: ProjectionRunner<S, C, P>,
    mut control: watch::Receiver<Control>,
    permits: Arc<Semaphore>,
    retry: Duration,
) -> Result<P, ProjectionError>
where
    S: EventStore,
    C: CheckpointStore,
    P: Projection<C::Tx>,
{
    loop {
        runner.set_phase(Phase::WaitingForLock);
        let permit = {
            let stopped = {
                let now = *control.borrow();
                now.stop || now.abort
            };
            if stopped {
                return Ok(runner.into_projection());
            }
            tokio::select! {
                permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                () = asked(&mut control) => continue,
            }
        };
        let result = runner.run(&mut control, Mode::Follow, false).await;
        drop(permit);
        match result {
            Ok(()) => return Ok(runner.into_projection()),
            Err(ProjectionError::AlreadyRunning { .. }) => {}
            Err(
                e @ ProjectionError::Checkpoint {
                    source: CheckpointError::LockLost { .. } | CheckpointError::Moved { .. },
                    ..
                },
            ) => {
                // Another process took the shard over: wait for it to become free again.
                tracing::warn!(projection = %runner.name(), error = %ErrorChain::new(&e), "lost the shard to another process");
            }
            Err(e) => return Err(e),
        }
        runner.set_phase(Phase::WaitingForLock);
        if pause(&mut control, retry).await {
            return Ok(runner.into_projection());
        }
    }
}

/// One shard of a [`RunningShards`].
#[derive(Debug)]
struct ShardHandle {
    shard: Shard,
    name: String,
    status: watch::Receiver<ProjectionStatus>,
}

/// This process's shards of a sharded projection, running on tokio tasks, made by
/// [`ShardedRunner::spawn`]. Dropping it leaves them running.
#[derive(Debug)]
pub struct RunningShards<P> {
    control: watch::Sender<Control>,
    shards: Vec<ShardHandle>,
    tasks: Vec<tokio::task::JoinHandle<Result<P, ProjectionError>>>,
}

impl<P> RunningShards<P> {
    /// Every shard, in order.
    pub fn shards(&self) -> Vec<Shard> {
        self.shards.iter().map(|s| s.shard).collect()
    }

    /// The status of every shard as this process sees it: the shards it runs report their
    /// progress; the others are [`Phase::WaitingForLock`] (another process runs them, or
    /// this process holds as many as it may).
    pub fn status(&self) -> Vec<(Shard, ProjectionStatus)> {
        self.shards
            .iter()
            .map(|s| (s.shard, s.status.borrow().clone()))
            .collect()
    }

    /// The shards this process runs now.
    pub fn owned(&self) -> Vec<Shard> {
        self.shards
            .iter()
            .filter(|s| {
                matches!(
                    s.status.borrow().phase,
                    Phase::CatchingUp | Phase::Live | Phase::Rebuilding | Phase::Retrying { .. }
                )
            })
            .map(|s| s.shard)
            .collect()
    }

    /// Waits until every shard this process runs is caught up with the log and at or
    /// after `position`, or until `timeout` passes; true if they are. Shards run by other
    /// processes are not waited for.
    pub async fn wait_for_owned(&self, position: Position, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let done = self.shards.iter().all(|s| {
                let status = s.status.borrow();
                match status.phase {
                    Phase::CatchingUp | Phase::Rebuilding | Phase::Retrying { .. } => false,
                    Phase::Live => status.checkpoint >= position,
                    _ => true,
                }
            });
            if done {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops every shard after the event in progress, committing what was handled, gives
    /// their locks back, and returns the shards' projections in shard order (a shard this
    /// process never ran returns the projection it was made with). The first error of a
    /// shard that failed is returned instead.
    pub async fn stop(self) -> Result<Vec<P>, ProjectionError> {
        self.control.send_modify(|c| c.stop = true);
        let mut projections = Vec::with_capacity(self.tasks.len());
        let mut first_error = None;
        for (task, shard) in self.tasks.into_iter().zip(&self.shards) {
            match task.await {
                Ok(Ok(projection)) => projections.push(projection),
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    first_error.get_or_insert(ProjectionError::Panicked {
                        projection: shard.name.clone(),
                        message: panic_message(e),
                    });
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(projections),
        }
    }

    /// Ends every shard at once, like a crash: the batches in progress are abandoned, not
    /// committed; returns once their locks are given back.
    pub async fn abort(self) {
        self.control.send_modify(|c| c.abort = true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}
