//! The handle of a spawned runner: status, waits, rebuild, stop, abort.

use tokio::sync::watch;

use crate::position::Position;
use crate::store::EventStore;

use super::*;

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
    pub(super) name: String,
    pub(super) control: watch::Sender<Control>,
    pub(super) status: watch::Receiver<ProjectionStatus>,
    pub(super) task: tokio::task::JoinHandle<Result<ProjectionRunner<S, C, P>, ProjectionError>>,
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

pub(super) fn panic_message(error: tokio::task::JoinError) -> String {
    match error.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_owned()),
        Err(e) => e.to_string(),
    }
}
