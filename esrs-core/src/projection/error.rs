//! Why a projection or its checkpoint store failed.

use crate::envelope::RecordedEvent;
use crate::error::{BoxError, Error};
use crate::event::DecodeError;
use crate::position::Position;
use crate::stream::{StreamId, Version};

/// Why a [`CheckpointStore`](super::CheckpointStore) failed.
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
    /// Any other failure of the checkpoint store's backend: its own error.
    #[error("checkpoint store failure")]
    Backend(#[source] BoxError),
}

/// Why a projection runner stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError {
    /// The handler failed on an event.
    #[error(
        "projection `{projection}` failed on event {position} (version {version} of stream `{stream}`)"
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
        "projection `{projection}` cannot decode event {position} (version {version} of stream `{stream}`)"
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
    #[error("projection `{projection}` failed to reset for a rebuild")]
    Reset {
        /// The projection.
        projection: String,
        /// What the hook returned.
        #[source]
        source: BoxError,
    },
    /// The event store failed: reading the log, or, for an inline projection, appending.
    #[error("projection `{projection}` failed at the event store")]
    EventStore {
        /// The projection.
        projection: String,
        /// The event store's error.
        #[source]
        source: Error,
    },
    /// The checkpoint store failed, or another runner moved the checkpoint.
    #[error("projection `{projection}` failed at its checkpoint store")]
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
    /// A change of the number of shards cannot be made as asked
    /// ([`ShardedRunner::reshard`](crate::projection::ShardedRunner::reshard)).
    #[error("projection `{projection}` cannot be resharded: {reason}")]
    ShardLayout {
        /// The shard's checkpoint name.
        projection: String,
        /// What is in the way.
        reason: String,
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

    /// The error of a handler that failed on an event: it names the projection and the
    /// event's position, stream and version.
    pub fn handler(projection: &str, record: &RecordedEvent, source: BoxError) -> Self {
        Self::Handler {
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
    pub(super) fn is_batch_failure(&self) -> bool {
        !matches!(
            self,
            Self::AlreadyRunning { .. }
                | Self::NotRunning { .. }
                | Self::ShardLayout { .. }
                | Self::Checkpoint {
                    source: CheckpointError::Moved { .. } | CheckpointError::LockLost { .. },
                    ..
                }
        )
    }
}
