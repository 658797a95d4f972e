//! Aggregates: state rebuilt as a left fold of its events.

use serde_json::value::RawValue;

use crate::event::{EncodeError, EventSet, Payload};
use crate::snapshot::SnapshotKey;

/// A consistency boundary of the domain: a state type rebuilt by applying its events in
/// order, starting from [`Default`].
///
/// Implemented by `#[aggregate]` on the state's impl block, from its `#[apply]` handlers.
/// Commands are ordinary methods of the state that return events or a domain error; they
/// are run by [`Repository::execute`](crate::Repository::execute).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an esrs aggregate",
    note = "put `#[aggregate]` on the impl block of `{Self}` that holds its `#[apply]` handlers"
)]
pub trait Aggregate: Default + Send + Sync + 'static {
    /// The category of the aggregate's streams, e.g. `"cart"`; the stream of aggregate `42`
    /// is `"cart-42"`.
    const NAME: &'static str;

    /// Take a snapshot every this many events; `None` never snapshots.
    const SNAPSHOT_EVERY: Option<u64> = None;

    /// Identifies the code that writes and reads snapshots: the declared
    /// `#[aggregate(snapshot_version = N)]` (raise it when the state's layout changes) and a
    /// fingerprint of the `#[apply]` handlers; snapshots written under another key are
    /// ignored.
    const SNAPSHOT_KEY: SnapshotKey = SnapshotKey {
        schema_version: 1,
        fingerprint: 0,
    };

    /// The aggregate's events.
    type Event: EventSet;

    /// Applies one event to the state. Applying cannot fail: an event is a fact.
    fn apply(&mut self, event: &Self::Event);

    /// Encodes the state as a snapshot; `None` when the aggregate has no snapshots.
    fn encode_snapshot(&self) -> Option<Result<Payload, EncodeError>> {
        None
    }

    /// Decodes a snapshot written by [`Aggregate::encode_snapshot`].
    fn decode_snapshot(payload: &RawValue) -> Option<Result<Self, serde_json::Error>> {
        let _ = payload;
        None
    }
}

/// Encodes a serializable state as a snapshot payload (see `SnapshotState`).
pub(crate) fn encode_snapshot<A: serde::Serialize>(
    name: &'static str,
    state: &A,
) -> Result<Payload, EncodeError> {
    crate::event::encode_json(name, state)
}

/// Decodes a snapshot payload into a deserializable state (see `SnapshotState`).
pub(crate) fn decode_snapshot<A: serde::de::DeserializeOwned>(
    payload: &RawValue,
) -> Result<A, serde_json::Error> {
    serde_json::from_str(payload.get())
}
