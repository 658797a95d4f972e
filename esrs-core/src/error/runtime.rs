//! Errors of the runtime and the stores.

use crate::idempotency::IdempotencyKey;
use crate::stream::{ExpectedVersion, StreamId, StreamIdError, Version};

/// A specialised `Result` whose error defaults to [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The stream was not at the version the writer expected: another writer appended first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "concurrency conflict on stream `{stream}`: expected {expected}, but it is at version {actual}"
)]
#[non_exhaustive]
pub struct Conflict {
    /// The stream.
    pub stream: StreamId,
    /// What the writer expected.
    pub expected: ExpectedVersion,
    /// The stream's actual version when the append was refused.
    pub actual: Version,
}

impl Conflict {
    /// A conflict on `stream`.
    pub fn new(stream: StreamId, expected: ExpectedVersion, actual: Version) -> Self {
        Self {
            stream,
            expected,
            actual,
        }
    }
}

/// An error of an event store or of the runtime around it.
///
/// Its `Display` says what failed; the cause, when there is one, is its
/// [`source()`](std::error::Error::source). Show it to a person with its causes through
/// [`ErrorChain`](crate::error::ErrorChain).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Another writer appended to the stream first. Reload and decide again, or let
    /// [`Repository`](crate::Repository) retry.
    #[error(transparent)]
    Conflict(#[from] Conflict),

    /// An idempotency key was reused for a different stream.
    #[error(
        "idempotency key `{key}` was already used for stream `{original_stream}` and cannot be reused for `{stream}`"
    )]
    IdempotencyKeyReused {
        /// The key.
        key: IdempotencyKey,
        /// The stream the key was first used for.
        original_stream: StreamId,
        /// The stream of the refused request.
        stream: StreamId,
    },

    /// An idempotency key was reused for a different request on the same stream: the
    /// stored digest of the key's first request differs from this request's (see
    /// [`RequestDigest`](crate::store::RequestDigest)). Nothing was written; use a new key for a
    /// new request.
    #[error(
        "idempotency key `{key}` was already used for a different request on stream `{stream}`; a key identifies one request: use a new key for a new request"
    )]
    IdempotencyKeyMismatch {
        /// The key.
        key: IdempotencyKey,
        /// The stream of both requests.
        stream: StreamId,
    },

    /// A stream id made by esrs (such as an aggregate's `"{category}-{id}"`) is not a
    /// valid stream id, for example because it is too long.
    #[error("invalid stream id")]
    InvalidStreamId(#[from] StreamIdError),

    /// The metadata of an append was refused before anything was written.
    #[error("invalid metadata for stream `{stream}`")]
    InvalidMetadata {
        /// The stream.
        stream: StreamId,
        /// What is wrong with it.
        #[source]
        source: crate::error::MetadataError,
    },

    /// An event payload was larger than the store accepts.
    #[error(
        "event `{name}` for stream `{stream}` is {size} bytes, over the limit of {limit}; keep events small: store the blob elsewhere and keep a reference to it in the event"
    )]
    PayloadTooLarge {
        /// The stream.
        stream: StreamId,
        /// The stored name of the event.
        name: &'static str,
        /// The payload's size in bytes.
        size: usize,
        /// The store's limit in bytes.
        limit: usize,
    },

    /// A stored event could not be decoded.
    #[error("cannot decode event at version {version} of stream `{stream}`")]
    Decode {
        /// The stream.
        stream: StreamId,
        /// The event's version in the stream.
        version: Version,
        /// Why it failed.
        #[source]
        source: crate::DecodeError,
    },

    /// An event or snapshot could not be encoded.
    #[error(transparent)]
    Encode(#[from] crate::error::EncodeError),

    /// The key store of personal data could not answer, or refused (for example new
    /// personal data of a forgotten subject).
    #[error(transparent)]
    KeyStore(#[from] crate::personal::KeyStoreError),

    /// The store refused the operation for a reason that may pass on its own (for example a
    /// serialization failure); the operation can be retried as is.
    #[error("transient store failure, safe to retry")]
    Retryable {
        /// The store's error.
        #[source]
        source: BoxError,
    },

    /// The store could not be reached or the connection was lost. An append that returned
    /// this error may or may not have been committed: retry it with its idempotency key.
    #[error("event store unavailable")]
    Unavailable {
        /// The store's error.
        #[source]
        source: BoxError,
    },

    /// A read model updated in the append's transaction (an inline read model) refused the
    /// events: its handler failed or an event it handles did not decode. Nothing was
    /// appended.
    #[error("inline read model `{projection}` refused the events; nothing was appended")]
    InlineReadModel {
        /// The read model's name.
        projection: String,
        /// Why it refused.
        #[source]
        source: BoxError,
    },

    /// Any other failure of the store's backend (for example a database error that
    /// retrying cannot fix, or a missing schema), or a store that broke its contract.
    #[error("event store failure")]
    Backend {
        /// The backend's own error.
        #[source]
        source: BoxError,
    },
}

/// A boxed error of a store's own error type.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

impl Error {
    /// The conflict, if this is one.
    pub fn as_conflict(&self) -> Option<&Conflict> {
        match self {
            Self::Conflict(c) => Some(c),
            _ => None,
        }
    }

    /// Whether retrying the same operation may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable { .. } | Self::Unavailable { .. })
    }
}
