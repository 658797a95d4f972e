//! The trait a read model implements.

use std::future::Future;

use crate::envelope::RecordedEvent;
use crate::error::BoxError;
use crate::store::LogFilter;

use super::ProjectionEvents;

/// A read model built from the global log.
///
/// `Tx` is the unit of work of the [`CheckpointStore`](crate::projection::CheckpointStore) the projection runs with: `()` for
/// [`InMemoryCheckpoints`](crate::projection::InMemoryCheckpoints), a database transaction for a database checkpoint store. A
/// projection that writes only through `tx` has an exactly-once effect; one that writes
/// elsewhere gets at-least-once delivery and should make its handler idempotent with the
/// envelope's position (see the [module docs](crate::projection)).
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

    /// The events the runner reads from the store. Defaults to the stored names of
    /// [`Self::Event`] (every event for [`serde_json::Value`]). A projection that narrows
    /// [`handles`](Self::handles) narrows this too, so that the store reads only the rows of
    /// its names (PostgreSQL filters them in SQL, with an index on the names); it must match
    /// every event `handles` accepts. The checkpoint still moves past the events not read.
    fn filter(&self) -> LogFilter {
        <Self::Event as ProjectionEvents>::filter()
    }

    /// Applies one event to the read model. An error stops the batch: its checkpoint is not
    /// saved, and the runner stops or retries as its [`ErrorPolicy`](crate::projection::ErrorPolicy) says.
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
