//! Idempotency: what a key remembers of its request, and the one rule every store and the
//! repository apply when a key comes back.
//!
//! A request made with an [`IdempotencyKey`] is remembered with its outcome and a
//! [`RequestDigest`] of what it asked for. When the key comes back:
//!
//! - for another stream, the request is refused with
//!   [`Error::IdempotencyKeyReused`];
//! - with a different digest (a different request), it is refused with
//!   [`Error::IdempotencyKeyMismatch`]: a key names one request, as in payment APIs;
//! - with the same digest, nothing is written and the original outcome is returned, marked
//!   [`deduplicated`](AppendOutcome::deduplicated).
//!
//! Keys are kept for a retention period ([`DEFAULT_IDEMPOTENCY_RETENTION`], set per store).
//! A key older than that is forgotten, whether or not a sweep has deleted it yet: a request
//! that comes back with it is a new request and is appended again.

use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::envelope::{AppendOutcome, AppendRequest};
use crate::error::{Error, Result};
use std::fmt;
use std::sync::Arc;

use crate::stream::{ExpectedVersion, StreamId};

/// How long a store remembers an idempotency key unless told otherwise: 7 days.
///
/// Long enough for any client's retries, including a retry after an outage; a repeat after
/// that is taken as a new request.
pub const DEFAULT_IDEMPOTENCY_RETENTION: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// A key that makes an append idempotent: a request retried with the same key appends
/// nothing and receives the outcome of the first append.
///
/// Keys are not empty, at most [`IdempotencyKey::MAX_LEN`] bytes long and free of control
/// characters (every store accepts exactly these); use a request id or a UUID.
///
/// ```
/// use esrs_core::IdempotencyKey;
/// use esrs_core::error::IdempotencyKeyError;
///
/// assert_eq!(IdempotencyKey::new("request-7").unwrap().as_str(), "request-7");
/// assert_eq!(
///     IdempotencyKey::new("a\0b"),
///     Err(IdempotencyKeyError::ControlCharacter { found: '\0', at: 1 })
/// );
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IdempotencyKey(Arc<str>);

/// Why a text was refused as an [`IdempotencyKey`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdempotencyKeyError {
    /// The key was empty.
    #[error("an idempotency key cannot be empty")]
    Empty,
    /// The key was longer than [`IdempotencyKey::MAX_LEN`] bytes.
    #[error("an idempotency key is at most {max} bytes long, this one has {len}")]
    TooLong {
        /// The length of the refused key, in bytes.
        len: usize,
        /// The longest length accepted, in bytes.
        max: usize,
    },
    /// The key held a control character (such as a newline or NUL).
    #[error("an idempotency key cannot contain control characters; found {found:?} at byte {at}")]
    ControlCharacter {
        /// The refused character.
        found: char,
        /// Its byte offset in the key.
        at: usize,
    },
}

impl IdempotencyKey {
    /// The longest idempotency key accepted by [`IdempotencyKey::new`], in bytes.
    pub const MAX_LEN: usize = 256;

    /// Validates `key` and makes an idempotency key of it.
    pub fn new(key: impl AsRef<str>) -> Result<Self, IdempotencyKeyError> {
        let key = key.as_ref();
        if key.is_empty() {
            return Err(IdempotencyKeyError::Empty);
        }
        if key.len() > IdempotencyKey::MAX_LEN {
            return Err(IdempotencyKeyError::TooLong {
                len: key.len(),
                max: IdempotencyKey::MAX_LEN,
            });
        }
        if let Some((at, found)) = key.char_indices().find(|(_, c)| c.is_control()) {
            return Err(IdempotencyKeyError::ControlCharacter { found, at });
        }
        Ok(Self(Arc::from(key)))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<uuid::Uuid> for IdempotencyKey {
    fn from(id: uuid::Uuid) -> Self {
        Self(Arc::from(id.to_string()))
    }
}

impl TryFrom<String> for IdempotencyKey {
    type Error = IdempotencyKeyError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl TryFrom<&str> for IdempotencyKey {
    type Error = IdempotencyKeyError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<IdempotencyKey> for String {
    fn from(k: IdempotencyKey) -> Self {
        k.0.to_string()
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A digest of what a request asked for, stored with its idempotency key so that the key
/// reused for a *different* request is detected.
///
/// For a raw [`EventStore::append`](crate::EventStore::append) the digest
/// ([`RequestDigest::of_append`]) covers the stream, the expected version and every event's
/// stored name, payload version and payload, but not the metadata: a retry may carry a new
/// trace or causation id and is still the same request.
///
/// For [`Repository::execute`](crate::Repository::execute) the events are decided by the
/// command on the state it loads, so they cannot identify the request; there "the same
/// request" is the same key on the same aggregate ([`RequestDigest::of_command`]), and the
/// repeat gets the original outcome without the command being run.
///
/// The text is a SHA-256 in lowercase hexadecimal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestDigest(Box<str>);

impl RequestDigest {
    /// The digest of a raw append: stream, expected version and events.
    pub fn of_append(request: &AppendRequest) -> Self {
        let mut hash = Sha256::new();
        hash.update(b"esrs append\0");
        field(&mut hash, request.stream.as_str().as_bytes());
        match request.expected {
            ExpectedVersion::Any => hash.update(b"any\0"),
            ExpectedVersion::NoStream => hash.update(b"no stream\0"),
            ExpectedVersion::Exact(version) => {
                hash.update(b"exact\0");
                hash.update(version.to_be_bytes());
            }
        }
        hash.update((request.events.len() as u64).to_be_bytes());
        for event in &request.events {
            field(&mut hash, event.name.as_bytes());
            hash.update(event.schema_version.to_be_bytes());
            field(&mut hash, event.payload.get().as_bytes());
        }
        Self::finish(hash)
    }

    /// The digest of a command of [`Repository::execute`](crate::Repository::execute) on
    /// the aggregate stored in `stream`.
    pub fn of_command(stream: &StreamId) -> Self {
        let mut hash = Sha256::new();
        hash.update(b"esrs command\0");
        field(&mut hash, stream.as_str().as_bytes());
        Self::finish(hash)
    }

    /// A digest read back from a store.
    #[doc(hidden)]
    pub fn from_stored(text: impl Into<Box<str>>) -> Self {
        Self(text.into())
    }

    /// The digest as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn finish(hash: Sha256) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = String::with_capacity(64);
        for byte in hash.finalize() {
            text.push(char::from(HEX[usize::from(byte >> 4)]));
            text.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
        Self(text.into())
    }
}

/// A length-prefixed field, so that no two different requests hash the same bytes.
fn field(hash: &mut Sha256, bytes: &[u8]) {
    hash.update((bytes.len() as u64).to_be_bytes());
    hash.update(bytes);
}

impl std::fmt::Display for RequestDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a store remembers of a request made with an idempotency key: its outcome and the
/// digest of what it asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IdempotencyRecord {
    /// The outcome of the original append.
    pub outcome: AppendOutcome,
    /// The digest of the original request; `None` for a key stored before digests were
    /// kept, which then matches any request on its stream.
    pub digest: Option<RequestDigest>,
}

impl IdempotencyRecord {
    /// A record; used by store implementations.
    pub fn new(outcome: AppendOutcome, digest: Option<RequestDigest>) -> Self {
        Self { outcome, digest }
    }

    /// The answer to a request on `stream` with digest `digest` that came back with `key`:
    /// the original outcome, marked deduplicated, or the error that says why the key
    /// cannot be reused for it. Every store and the repository decide with this rule.
    pub fn replay(
        self,
        key: &IdempotencyKey,
        stream: &StreamId,
        digest: &RequestDigest,
    ) -> Result<AppendOutcome> {
        if &self.outcome.stream != stream {
            return Err(Error::IdempotencyKeyReused {
                key: key.clone(),
                original_stream: self.outcome.stream,
                stream: stream.clone(),
            });
        }
        if self.digest.as_ref().is_some_and(|stored| stored != digest) {
            return Err(Error::IdempotencyKeyMismatch {
                key: key.clone(),
                stream: stream.clone(),
            });
        }
        let mut outcome = self.outcome;
        outcome.deduplicated = true;
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::NewEvent;

    fn event(payload: &str) -> NewEvent {
        NewEvent::new(
            "E",
            1,
            serde_json::value::RawValue::from_string(payload.to_owned()).unwrap(),
        )
    }

    fn request(expected: ExpectedVersion, payloads: &[&str]) -> AppendRequest {
        AppendRequest::new(
            StreamId::new("s").unwrap(),
            expected,
            payloads.iter().map(|p| event(p)).collect(),
        )
    }

    #[test]
    fn the_digest_tells_requests_apart() {
        let a = RequestDigest::of_append(&request(ExpectedVersion::Exact(1), &["{}"]));
        assert_eq!(a.as_str().len(), 64);
        assert_eq!(
            a,
            RequestDigest::of_append(
                &request(ExpectedVersion::Exact(1), &["{}"])
                    .metadata(crate::Metadata::new().with_actor("retry"))
            ),
            "metadata is not part of the request"
        );
        for other in [
            request(ExpectedVersion::Exact(2), &["{}"]),
            request(ExpectedVersion::Any, &["{}"]),
            request(ExpectedVersion::Exact(1), &["{\"a\":1}"]),
            request(ExpectedVersion::Exact(1), &["{}", "{}"]),
            request(ExpectedVersion::Exact(1), &[]),
        ] {
            assert_ne!(a, RequestDigest::of_append(&other), "{other:?}");
        }
        let stream = StreamId::new("s").unwrap();
        assert_ne!(a, RequestDigest::of_command(&stream));
        assert_eq!(
            RequestDigest::of_command(&stream),
            RequestDigest::of_command(&stream)
        );
    }

    #[test]
    fn replay_is_the_original_outcome_or_a_typed_refusal() {
        let stream = StreamId::new("s").unwrap();
        let key = IdempotencyKey::new("k").unwrap();
        let digest = RequestDigest::of_command(&stream);
        let outcome = AppendOutcome::new(stream.clone(), 1, 2, None, None, false);
        let record = IdempotencyRecord::new(outcome.clone(), Some(digest.clone()));

        let replayed = record.clone().replay(&key, &stream, &digest).unwrap();
        assert!(replayed.deduplicated);
        assert_eq!((replayed.first_version, replayed.last_version), (1, 2));

        let other = RequestDigest::of_append(&request(ExpectedVersion::Any, &[]));
        match record.clone().replay(&key, &stream, &other) {
            Err(Error::IdempotencyKeyMismatch { key: k, stream: s }) => {
                assert_eq!((k, s), (key.clone(), stream.clone()))
            }
            other => panic!("expected a mismatch, got {other:?}"),
        }
        let elsewhere = StreamId::new("t").unwrap();
        assert!(matches!(
            record.replay(&key, &elsewhere, &digest),
            Err(Error::IdempotencyKeyReused { .. })
        ));
        // A key stored without a digest matches any request on its stream.
        let legacy = IdempotencyRecord::new(outcome, None);
        assert!(legacy.replay(&key, &stream, &other).unwrap().deduplicated);
    }

    #[test]
    fn idempotency_key_validation() {
        assert_eq!(IdempotencyKey::new(""), Err(IdempotencyKeyError::Empty));
        assert_eq!(
            IdempotencyKey::new("k".repeat(IdempotencyKey::MAX_LEN + 1)),
            Err(IdempotencyKeyError::TooLong {
                len: IdempotencyKey::MAX_LEN + 1,
                max: IdempotencyKey::MAX_LEN
            })
        );
        assert!(IdempotencyKey::new("k".repeat(IdempotencyKey::MAX_LEN)).is_ok());
        for bad in ["a\0b", "line\nbreak", "tab\there", "\u{7f}"] {
            assert!(
                matches!(
                    IdempotencyKey::new(bad),
                    Err(IdempotencyKeyError::ControlCharacter { .. })
                ),
                "{bad:?} is refused"
            );
        }
        // Deserialising checks the key too.
        assert!(serde_json::from_str::<IdempotencyKey>(r#""a\u0000b""#).is_err());
        assert_eq!(IdempotencyKey::new("req-1").unwrap().as_str(), "req-1");
    }
}
