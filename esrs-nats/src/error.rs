//! Why the relay or the consumer failed.

use std::time::Duration;

use esrs_core::projection::{CheckpointError, ProjectionError};
use esrs_core::{BoxError, Position, StreamId, Version};

use crate::headers::MessageError;

/// Why a relay could not start or publish.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// The JetStream stream the relay publishes to could not be read (it does not exist, or
    /// NATS is unreachable).
    #[error("cannot read JetStream stream `{stream}`")]
    StreamInfo {
        /// The JetStream stream.
        stream: String,
        /// What NATS answered.
        #[source]
        source: BoxError,
    },
    /// The stream's duplicate window is shorter than the relay's: an event re-sent after a
    /// crash, later than the stream's window but within the relay's, would be stored twice.
    #[error(
        "JetStream stream `{stream}` keeps message ids for {stream_window:?}, shorter than the relay's duplicate window of {relay_window:?}: raise the stream's `duplicate_window` or lower the relay's"
    )]
    DuplicateWindowTooShort {
        /// The JetStream stream.
        stream: String,
        /// Its `duplicate_window`.
        stream_window: Duration,
        /// The relay's.
        relay_window: Duration,
    },
    /// An event could not be sent to NATS.
    #[error(
        "cannot publish event {position} (version {version} of stream `{stream}`) to `{subject}`"
    )]
    Publish {
        /// The subject.
        subject: String,
        /// The event's stream.
        stream: StreamId,
        /// The event's version.
        version: Version,
        /// The event's position.
        position: Position,
        /// What the client returned.
        #[source]
        source: BoxError,
    },
    /// JetStream did not acknowledge an event (it refused it, or the ack timed out). The
    /// batch's checkpoint is not saved; the batch is sent again.
    #[error(
        "JetStream did not acknowledge event {position} (version {version} of stream `{stream}`)"
    )]
    Ack {
        /// The event's stream.
        stream: StreamId,
        /// The event's version.
        version: Version,
        /// The event's position.
        position: Position,
        /// What the client returned.
        #[source]
        source: BoxError,
    },
}

/// Why a [`JetStreamProjection`](crate::JetStreamProjection) stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumerError {
    /// Another consumer of the same projection holds its lock.
    #[error("projection `{projection}` is already running elsewhere")]
    AlreadyRunning {
        /// The projection.
        projection: String,
    },
    /// Creating the JetStream consumer or fetching messages failed.
    #[error("projection `{projection}` cannot read JetStream stream `{stream}`")]
    Fetch {
        /// The projection.
        projection: String,
        /// The JetStream stream.
        stream: String,
        /// What NATS answered.
        #[source]
        source: BoxError,
    },
    /// A message is not a relay message.
    #[error("projection `{projection}` cannot read message {sequence} of the JetStream stream")]
    Message {
        /// The projection.
        projection: String,
        /// The message's stream sequence.
        sequence: u64,
        /// What is wrong with it.
        #[source]
        source: MessageError,
    },
    /// The projection's handler failed, or an event it handles does not decode.
    #[error("projection failed")]
    Projection(#[source] ProjectionError),
    /// The checkpoint store failed, or another consumer moved the checkpoint.
    #[error("projection `{projection}`: the checkpoint store failed")]
    Checkpoint {
        /// The projection.
        projection: String,
        /// The checkpoint store's error.
        #[source]
        source: CheckpointError,
    },
}
