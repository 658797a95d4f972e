//! What the owner of a running projection asks of its runner (stop, abort, rebuild), and
//! how the runner waits for it.

use std::time::Duration;

use tokio::sync::watch;

#[cfg(doc)]
use super::RunningProjection;

/// What the owner of a running projection asks of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Control {
    pub(super) stop: bool,
    pub(super) abort: bool,
    pub(super) rebuilds: u64,
}

/// Whether the runner was asked to stop or rebuild since its pass began with `seen`: a
/// version check first (an atomic load, cheap enough for every event), the value only when
/// something was sent.
///
/// An abort is not an interruption: it drops the runner where it is, without committing.
pub(super) fn interrupted(control: &watch::Receiver<Control>, seen: Control) -> bool {
    control.has_changed().unwrap_or(true) && {
        let now = *control.borrow();
        now.stop != seen.stop || now.rebuilds != seen.rebuilds
    }
}

/// Sleeps for `duration`, waking early when the owner asks for something; true if it asked
/// to stop.
pub(super) async fn pause(control: &mut watch::Receiver<Control>, duration: Duration) -> bool {
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
pub(super) async fn asked(control: &mut watch::Receiver<Control>) {
    if control.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Waits until the owner asks the runner to abort; never, once the owner is gone.
pub(super) async fn aborted(mut control: watch::Receiver<Control>) {
    if control.wait_for(|c| c.abort).await.is_err() {
        std::future::pending::<()>().await;
    }
}
