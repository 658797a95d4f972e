//! What is stored around an event: metadata, the recorded envelope, appends and snapshots.

use chrono::{DateTime, Utc};

use crate::event::{DecodeError, EventSet, Payload};
use crate::idempotency::IdempotencyKey;
use crate::idempotency::RequestDigest;
use crate::position::Position;
use crate::stream::{StreamId, Version};

/// Why metadata was refused; see [`Metadata::validate`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataError {
    /// A text of the metadata (the actor, a custom key or a custom string value) held a
    /// NUL character, which no store keeps.
    #[error("metadata cannot contain NUL characters; found one in {field}")]
    NulCharacter {
        /// Where: `actor`, or the path of the custom field.
        field: String,
    },
    /// The metadata, encoded as JSON, was over [`Metadata::MAX_BYTES`].
    #[error(
        "metadata is {size} bytes encoded, over the limit of {limit}; keep metadata to ids and short labels"
    )]
    TooLarge {
        /// Its encoded size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
}

/// Who and what caused an event, stored beside its payload.
///
/// The time an event was recorded is set by the store and kept on [`RecordedEvent`].
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Metadata {
    /// Groups every event caused by one original request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<uuid::Uuid>,
    /// The message (command or event) that directly caused this event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<uuid::Uuid>,
    /// The user or system that issued the command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Any other fields the application records.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub custom: serde_json::Map<String, serde_json::Value>,
}

impl Metadata {
    /// The largest metadata an append accepts, encoded as JSON: 64 KiB. Metadata is stored
    /// with every event of an append; keep it to ids and short labels.
    pub const MAX_BYTES: usize = 64 * 1024;

    /// Empty metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the correlation id.
    pub fn with_correlation_id(mut self, id: uuid::Uuid) -> Self {
        self.correlation_id = Some(id);
        self
    }

    /// Sets the causation id.
    pub fn with_causation_id(mut self, id: uuid::Uuid) -> Self {
        self.causation_id = Some(id);
        self
    }

    /// The metadata of what `event` causes (the events of a command a policy or a process
    /// manager runs in reaction to it): caused by that event (its [`id`](RecordedEvent::id)),
    /// in the same correlation (the event's own, or the event itself when it has none), by
    /// the same actor.
    ///
    /// ```
    /// # use esrs_core::{Metadata, RecordedEvent, Position, StreamId};
    /// # let event = RecordedEvent::new(Position::new(1, 1), StreamId::new("order-1").unwrap(),
    /// #     1, "OrderPlaced", 1, "{}", Metadata::new().with_actor("alice"),
    /// #     esrs_core::chrono::Utc::now()).with_id(esrs_core::uuid::Uuid::new_v4());
    /// let follow_up = Metadata::caused_by(&event);
    /// assert_eq!(follow_up.causation_id, Some(event.id));
    /// assert_eq!(follow_up.correlation_id, Some(event.id)); // the event started it
    /// assert_eq!(follow_up.actor.as_deref(), Some("alice"));
    /// ```
    pub fn caused_by(event: &RecordedEvent) -> Self {
        Self::caused_by_parts(
            event.id,
            event.metadata.correlation_id,
            event.metadata.actor.clone(),
        )
    }

    /// [`caused_by`](Self::caused_by) an event known by its id, its correlation and its
    /// actor.
    pub(crate) fn caused_by_parts(
        id: uuid::Uuid,
        correlation_id: Option<uuid::Uuid>,
        actor: Option<String>,
    ) -> Self {
        Self {
            correlation_id: Some(correlation_id.unwrap_or(id)),
            causation_id: Some(id),
            actor,
            custom: serde_json::Map::new(),
        }
    }

    /// The metadata a command run now starts from: while a projection's handler runs (a
    /// policy reacting to an event, see [`reacting_to`](crate::projection::reacting_to)),
    /// [`Metadata::caused_by`] the event it handles; elsewhere, empty.
    ///
    /// [`Repository::execute`](crate::Repository::execute) starts from it, so the events a
    /// policy's command produces name the event that caused them by default. Give it to an
    /// [`AppendRequest`] built by hand in a handler to do the same.
    pub fn inherited() -> Self {
        crate::projection::reaction::current().unwrap_or_default()
    }

    /// Sets the actor.
    pub fn with_actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    /// Adds a custom field.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.custom.insert(key.into(), value.into());
        self
    }

    /// Checks what every store accepts: no NUL character in any text and at most
    /// [`Metadata::MAX_BYTES`] encoded. Stores call it (through
    /// [`AppendRequest::check`]) before writing anything, so the in-memory store refuses
    /// exactly what PostgreSQL would.
    ///
    /// ```
    /// use esrs_core::Metadata;
    /// use esrs_core::error::MetadataError;
    ///
    /// assert!(Metadata::new().with_actor("alice").validate().is_ok());
    /// assert!(matches!(
    ///     Metadata::new().with("note", "a\0b").validate(),
    ///     Err(MetadataError::NulCharacter { .. })
    /// ));
    /// ```
    pub fn validate(&self) -> Result<(), MetadataError> {
        if self.actor.as_deref().is_some_and(|a| a.contains('\0')) {
            return Err(MetadataError::NulCharacter {
                field: "actor".to_owned(),
            });
        }
        for (key, value) in &self.custom {
            nul_free(key, value, &mut format!("custom.{key}"))?;
        }
        if self.is_empty() {
            return Ok(());
        }
        let size = serde_json::to_string(self).map_or(0, |text| text.len());
        if size > Metadata::MAX_BYTES {
            return Err(MetadataError::TooLarge {
                size,
                limit: Metadata::MAX_BYTES,
            });
        }
        Ok(())
    }

    /// Whether no field is set.
    pub fn is_empty(&self) -> bool {
        self.correlation_id.is_none()
            && self.causation_id.is_none()
            && self.actor.is_none()
            && self.custom.is_empty()
    }
}

/// Refuses a NUL in `key` or anywhere in `value`; `path` names the field for the error.
fn nul_free(key: &str, value: &serde_json::Value, path: &mut String) -> Result<(), MetadataError> {
    let refuse = |path: &str| MetadataError::NulCharacter {
        field: path.to_owned(),
    };
    if key.contains('\0') {
        return Err(refuse(path));
    }
    match value {
        serde_json::Value::String(text) if text.contains('\0') => Err(refuse(path)),
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                nul_free("", item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        serde_json::Value::Object(fields) => {
            for (k, item) in fields {
                let len = path.len();
                path.push('.');
                path.push_str(k);
                nul_free(k, item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// An event ready to be appended: its stored name, the schema version of its payload and the
/// encoded payload. The stream version it gets is decided by the append.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewEvent {
    /// The stored name.
    pub name: &'static str,
    /// The schema version of its payload (the event type's [`Event::VERSION`](crate::Event::VERSION)).
    pub schema_version: u32,
    /// The JSON payload.
    pub payload: Payload,
}

impl NewEvent {
    /// An event with an already encoded payload.
    pub fn new(name: &'static str, schema_version: u32, payload: Payload) -> Self {
        Self {
            name,
            schema_version,
            payload,
        }
    }

    /// Encodes an event of an [`EventSet`].
    pub fn encode<E: EventSet>(event: &E) -> Result<Self, crate::error::EncodeError> {
        Ok(Self {
            name: event.name(),
            schema_version: event.schema_version(),
            payload: event.encode()?,
        })
    }
}

/// A request to append events to one stream, atomically.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AppendRequest {
    /// The stream appended to.
    pub stream: StreamId,
    /// The version the stream must be at.
    pub expected: crate::ExpectedVersion,
    /// The events, in order; all are appended or none.
    pub events: Vec<NewEvent>,
    /// Metadata stored with every event of the request.
    pub metadata: Metadata,
    /// Makes the append idempotent: a second request with the same key appends nothing and
    /// receives the first one's outcome.
    pub idempotency_key: Option<IdempotencyKey>,
    /// What the key is compared against when it comes back; `None` for the digest of
    /// this request's stream, expected version and events ([`RequestDigest::of_append`]).
    pub request_digest: Option<RequestDigest>,
}

impl AppendRequest {
    /// A request to append `events` to `stream`, which must be at `expected`.
    pub fn new(stream: StreamId, expected: crate::ExpectedVersion, events: Vec<NewEvent>) -> Self {
        Self {
            stream,
            expected,
            events,
            metadata: Metadata::default(),
            idempotency_key: None,
            request_digest: None,
        }
    }

    /// Sets the metadata stored with every event.
    pub fn metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Sets the idempotency key.
    pub fn idempotency_key(mut self, key: IdempotencyKey) -> Self {
        self.idempotency_key = Some(key);
        self
    }

    /// Sets what identifies the request for its idempotency key, instead of the digest of
    /// its events; [`Repository`](crate::Repository) uses [`RequestDigest::of_command`].
    pub fn request_digest(mut self, digest: RequestDigest) -> Self {
        self.request_digest = Some(digest);
        self
    }

    /// The digest stored with the idempotency key and compared when it comes back.
    pub fn digest(&self) -> RequestDigest {
        self.request_digest
            .clone()
            .unwrap_or_else(|| RequestDigest::of_append(self))
    }

    /// Everything a store checks before writing anything: payload sizes against `limit`
    /// and the metadata ([`Metadata::validate`]). Every store calls it, so they refuse the
    /// same requests.
    pub fn check(&self, limit: usize) -> Result<(), crate::Error> {
        self.check_payload_size(limit)?;
        self.metadata
            .validate()
            .map_err(|source| crate::Error::InvalidMetadata {
                stream: self.stream.clone(),
                source,
            })
    }

    /// Refuses any event whose payload is over `limit` bytes. Stores call this (through
    /// [`check`](Self::check)) before writing anything.
    pub fn check_payload_size(&self, limit: usize) -> Result<(), crate::Error> {
        for e in &self.events {
            let size = e.payload.get().len();
            if size > limit {
                return Err(crate::Error::PayloadTooLarge {
                    stream: self.stream.clone(),
                    name: e.name,
                    size,
                    limit,
                });
            }
        }
        Ok(())
    }
}

/// What an append did: the versions and global positions it wrote.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct AppendOutcome {
    /// The stream appended to.
    pub stream: StreamId,
    /// The version of the first event written (one past the previous version when nothing
    /// was written).
    pub first_version: Version,
    /// The stream's version after the append: the version of the last event written.
    pub last_version: Version,
    /// The global position of the first event written, if any.
    pub first_position: Option<Position>,
    /// The global position of the last event written, if any.
    pub last_position: Option<Position>,
    /// True when this outcome is the original one returned again for a repeated
    /// idempotency key: nothing was written this time.
    pub deduplicated: bool,
}

impl AppendOutcome {
    /// An outcome; used by store implementations.
    pub fn new(
        stream: StreamId,
        first_version: Version,
        last_version: Version,
        first_position: Option<Position>,
        last_position: Option<Position>,
        deduplicated: bool,
    ) -> Self {
        Self {
            stream,
            first_version,
            last_version,
            first_position,
            last_position,
            deduplicated,
        }
    }

    /// The outcome of an append that wrote `count` events after version `previous` of
    /// `stream`, the first and the last at `positions` (`None` when it wrote none): versions
    /// `previous + 1 ..= previous + count`, not deduplicated. The one rule by which every
    /// store reports a fresh append.
    pub fn appended(
        stream: StreamId,
        previous: Version,
        count: u64,
        positions: Option<(Position, Position)>,
    ) -> Self {
        let (first_position, last_position) = positions.unzip();
        Self::new(
            stream,
            previous + 1,
            previous + count,
            first_position,
            last_position,
            false,
        )
    }

    /// The number of events the append wrote (for a repeat, the original append).
    pub fn len(&self) -> u64 {
        (self.last_version + 1).saturating_sub(self.first_version)
    }

    /// Whether the append wrote no event (for a repeat, the original append).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An event as stored: the payload and everything the store recorded around it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RecordedEvent {
    /// Its id: unique and stable, given by the store when the event was appended (a random
    /// UUID), kept by backups and restores. Name it as the causation of what the event
    /// causes ([`Metadata::caused_by`]).
    pub id: uuid::Uuid,
    /// Its position in the store's global log.
    pub position: Position,
    /// Its stream.
    pub stream: StreamId,
    /// Its version in the stream (1 for the first event).
    pub version: Version,
    /// Its stored name (shared with the other events of its name that a read gives).
    pub name: crate::store::EventName,
    /// The schema version of its payload (its event type's version when it was written).
    pub schema_version: u32,
    /// The JSON payload, as stored. Stores hold only valid JSON (the payloads they were
    /// given, or a column that checks it), so the text is not parsed again on its way out:
    /// [`decode`](Self::decode) parses it once, straight into the event.
    pub payload: Box<str>,
    /// The metadata it was appended with.
    pub metadata: Metadata,
    /// When the store recorded it.
    pub recorded_at: DateTime<Utc>,
}

impl RecordedEvent {
    /// Assembles a recorded event; used by store implementations, which give it its id with
    /// [`with_id`](Self::with_id) (the nil UUID until then).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        position: Position,
        stream: StreamId,
        version: Version,
        name: impl Into<crate::store::EventName>,
        schema_version: u32,
        payload: impl Into<Box<str>>,
        metadata: Metadata,
        recorded_at: DateTime<Utc>,
    ) -> Self {
        Self {
            id: uuid::Uuid::nil(),
            position,
            stream,
            version,
            name: name.into(),
            schema_version,
            payload: payload.into(),
            metadata,
            recorded_at,
        }
    }

    /// The event with its id, as the store recorded it.
    pub fn with_id(mut self, id: uuid::Uuid) -> Self {
        self.id = id;
        self
    }

    /// Decodes the payload as an event of `E`.
    pub fn decode<E: EventSet>(&self) -> Result<E, crate::DecodeError> {
        E::decode(&self.name, self.schema_version, &self.payload)
    }

    /// The JSON payload's text.
    pub fn payload(&self) -> &str {
        &self.payload
    }
}

/// An event as a fold needs it: its version, stored name, payload version and payload,
/// without the rest of its envelope (position, metadata, recorded time).
///
/// Read by [`EventStore::read_for_fold`](crate::EventStore::read_for_fold), which a store can answer with less data
/// than [`EventStore::read_stream`](crate::EventStore::read_stream).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FoldEvent {
    /// Its version in the stream (1 for the first event).
    pub version: Version,
    /// Its stored name (shared with the other events of its name that a read gives).
    pub name: crate::store::EventName,
    /// The schema version of its payload (its event type's version when it was written).
    pub schema_version: u32,
    /// The JSON payload as stored. It is not parsed until [`decode`](Self::decode), which
    /// parses it once, straight into the event (a payload that is not JSON is a
    /// [`DecodeError::Malformed`] there).
    pub payload: Box<str>,
}

impl FoldEvent {
    /// Assembles a fold event; used by store implementations.
    pub fn new(
        version: Version,
        name: impl Into<crate::store::EventName>,
        schema_version: u32,
        payload: impl Into<Box<str>>,
    ) -> Self {
        Self {
            version,
            name: name.into(),
            schema_version,
            payload: payload.into(),
        }
    }

    /// Decodes the payload as an event of `E`.
    pub fn decode<E: EventSet>(&self) -> std::result::Result<E, DecodeError> {
        E::decode(&self.name, self.schema_version, &self.payload)
    }
}

impl From<RecordedEvent> for FoldEvent {
    fn from(event: RecordedEvent) -> Self {
        Self {
            version: event.version,
            name: event.name,
            schema_version: event.schema_version,
            payload: event.payload,
        }
    }
}
