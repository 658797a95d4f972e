//! The event a handler is reacting to, which the commands it runs inherit as their cause.

use std::cell::RefCell;
use std::future::Future;

use crate::envelope::{Metadata, RecordedEvent};

tokio::task_local! {
    /// The event whose handler runs in this task. A runner scopes it once per pass and sets
    /// it before each handler, which costs less per event than a scope around each one.
    static REACTING_TO: RefCell<Option<Cause>>;
}

/// What a command inherits of the event being handled.
#[derive(Debug)]
struct Cause {
    id: uuid::Uuid,
    correlation_id: Option<uuid::Uuid>,
    actor: Option<String>,
}

impl Cause {
    fn of(event: &RecordedEvent) -> Self {
        Self {
            id: event.id,
            correlation_id: event.metadata.correlation_id,
            actor: event.metadata.actor.clone(),
        }
    }
}

/// Runs `future` as the handling of `event`: while it runs, in its own task, a command
/// executed through a [`Repository`](crate::Repository) is caused by `event`, in its
/// correlation and by its actor, unless the command's metadata says otherwise (see
/// [`Metadata::inherited`]).
///
/// The [`ProjectionRunner`](super::ProjectionRunner) (and every runner of the esrs crates)
/// runs each handler this way, so a policy (a projection whose handler turns an event into
/// a command) propagates correlation and causation without writing them. Call it where you
/// hand events to handlers yourself. A task the handler spawns does not inherit the cause:
/// give it [`Metadata::caused_by`] explicitly.
///
/// ```
/// use esrs_core::Metadata;
/// # use esrs_core::{Position, RecordedEvent, StreamId};
/// # let event = RecordedEvent::new(Position::new(1, 1), StreamId::new("order-1").unwrap(),
/// #     1, "OrderPlaced", 1, "{}", Metadata::new().with_actor("alice"),
/// #     esrs_core::chrono::Utc::now()).with_id(esrs_core::uuid::Uuid::new_v4());
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let handled = esrs_core::projection::reacting_to(&event, async {
///     // In a handler: what a command run here starts from.
///     Metadata::inherited()
/// });
/// assert_eq!(handled.await, Metadata::caused_by(&event));
/// assert_eq!(Metadata::inherited(), Metadata::new()); // outside a handler: nothing
/// # });
/// ```
pub fn reacting_to<F: Future>(event: &RecordedEvent, future: F) -> impl Future<Output = F::Output> {
    REACTING_TO.scope(RefCell::new(Some(Cause::of(event))), future)
}

/// Runs `future`, which hands events to handlers one after another, each after
/// [`handling`] it: the scope of [`reacting_to`] for many events.
pub(crate) fn handlers<F: Future>(future: F) -> impl Future<Output = F::Output> {
    REACTING_TO.scope(RefCell::new(None), future)
}

/// Makes `event` the cause of the commands run from now on in the scope of [`handlers`].
pub(crate) fn handling(event: &RecordedEvent) {
    let _ = REACTING_TO.try_with(|cause| *cause.borrow_mut() = Some(Cause::of(event)));
}

/// [`Metadata::caused_by`] the event being handled in this task, if one is.
pub(crate) fn current() -> Option<Metadata> {
    REACTING_TO
        .try_with(|cause| {
            cause.borrow().as_ref().map(|cause| {
                Metadata::caused_by_parts(cause.id, cause.correlation_id, cause.actor.clone())
            })
        })
        .ok()
        .flatten()
}
