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
//!   with [`EventStore::wait_for_events`](crate::EventStore::wait_for_events) (a notification, or a poll every
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
//! use esrs_core::projection::InMemoryCheckpoints;
//! use esrs_core::{BoxError, EventStore, Projection, ProjectionRunner, RecordedEvent};
//! # use esrs_core::{ExpectedVersion, InMemoryStore, StreamId};
//! # use esrs_core::store::{AppendRequest, NewEvent};
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

mod checkpoint;
mod control;
mod error;
mod policy;
pub(crate) mod reaction;
pub(crate) mod read_model;
pub(crate) mod runner;
mod running;
mod shards;
mod status;
#[cfg(test)]
mod tests;

pub use crate::store::{LogFilter, Shard, ShardError};
pub use checkpoint::{CheckpointStore, InMemoryCheckpoints, InMemoryLock};
pub use error::{CheckpointError, ProjectionError};
pub use policy::ErrorPolicy;
pub use reaction::reacting_to;
pub(crate) use read_model::Projection;
pub(crate) use runner::ProjectionRunner;
pub use runner::{DEFAULT_BATCH_SIZE, DEFAULT_POLL_INTERVAL, shard_name};
pub use running::RunningProjection;
pub use shards::{DEFAULT_TAKEOVER_INTERVAL, RunningShards, ShardedRunner};
pub use status::{Phase, ProjectionStatus};

use self::control::Control;

use crate::envelope::RecordedEvent;
use crate::event::{DecodeError, EventSet};

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

    /// The events to read from the store: at least every event stored under a handled
    /// name. The store filters where the events are (PostgreSQL in SQL, with an index), so a
    /// projection of rare events does not read the other rows. Defaults to every event (the
    /// others are then read and skipped by [`handles`](Self::handles)); an event set gives
    /// its stored names.
    fn filter() -> LogFilter {
        LogFilter::all()
    }
}

impl<E: EventSet> ProjectionEvents for E {
    fn handles(name: &str) -> bool {
        E::handles(name)
    }

    fn decode(record: &RecordedEvent) -> Result<Self, DecodeError> {
        record.decode::<E>()
    }

    /// The stored names of the events of the set and their aliases.
    fn filter() -> LogFilter {
        let aliases = E::ALIASES.iter().flat_map(|aliases| aliases.iter());
        LogFilter::names(E::NAMES.iter().chain(aliases).copied())
    }
}

impl ProjectionEvents for serde_json::Value {
    fn handles(_name: &str) -> bool {
        true
    }

    fn decode(record: &RecordedEvent) -> Result<Self, DecodeError> {
        serde_json::from_str(record.payload()).map_err(|source| DecodeError::Malformed {
            name: "(any)",
            version: record.schema_version,
            source,
        })
    }
}
