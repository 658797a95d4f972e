//! The synchronous context in which personal fields are encrypted and decrypted.
//!
//! Encoding and decoding are synchronous (serde), key stores are asynchronous: the caller
//! fetches the keys of the subjects involved first, into a [`KeyRing`], and then encodes or
//! decodes inside [`KeyRing`]'s scope, a thread-local set for the duration of the call that
//! [`Personal`]'s `Serialize` and `Deserialize` read. An event type without personal fields
//! never looks at it.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::envelope::{NewEvent, RecordedEvent};
use crate::error::EncodeError;
use crate::event::{DecodeError, Event, EventSet};
use crate::stream::StreamId;

use super::cipher::{DataKey, KEY_LEN, NONCE_LEN, field_aad};
use super::keystore::{KeyStore, KeyStoreError, SubjectKey};
use super::{Personal, PersonalDataError, PersonalField};

/// The keys of the subjects one encode or decode needs, fetched from a [`KeyStore`]
/// beforehand. Cheap to clone.
#[derive(Clone, Default)]
pub struct KeyRing {
    inner: Arc<Ring>,
}

#[derive(Default)]
struct Ring {
    keys: HashMap<String, SubjectKey>,
    /// The test harness's ring: every subject has a key derived from its id, except the
    /// subjects listed, which are forgotten; nonces are derived too, so encodings repeat.
    harness: Option<HashSet<String>>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("subjects", &self.inner.keys.keys().collect::<Vec<_>>())
            .field("harness", &self.inner.harness.is_some())
            .finish()
    }
}

impl KeyRing {
    /// The keys for writing personal data of `subjects` to `stream` (created on first use;
    /// a forgotten subject is refused with [`KeyStoreError::SubjectForgotten`]).
    pub async fn for_writing(
        keys: &dyn KeyStore,
        stream: &StreamId,
        subjects: &[String],
    ) -> Result<Self, KeyStoreError> {
        let mut ring = Ring::default();
        for subject in subjects {
            if ring.keys.contains_key(subject) {
                continue;
            }
            let key = keys.key_for_writing(subject, stream).await?;
            ring.keys.insert(subject.clone(), SubjectKey::Key(key));
        }
        Ok(Self {
            inner: Arc::new(ring),
        })
    }

    /// What `keys` knows of each of `subjects`, for reading.
    pub async fn for_reading(
        keys: &dyn KeyStore,
        subjects: &[String],
    ) -> Result<Self, KeyStoreError> {
        let mut ring = Ring::default();
        for subject in subjects {
            if ring.keys.contains_key(subject) {
                continue;
            }
            let key = keys.key_for_reading(subject).await?;
            ring.keys.insert(subject.clone(), key);
        }
        Ok(Self {
            inner: Arc::new(ring),
        })
    }

    /// The keys for reading a stored payload: those of the subjects whose data it holds
    /// ([`subjects_in`]). Empty, and no round trip, for a payload with no personal data.
    pub async fn for_payload(keys: &dyn KeyStore, payload: &str) -> Result<Self, KeyStoreError> {
        Self::for_reading(keys, &subjects_in(payload)).await
    }

    /// The ring of the given/when/then harness: deterministic keys and nonces, and the
    /// `forgotten` subjects.
    pub(crate) fn harness(forgotten: HashSet<String>) -> Self {
        Self {
            inner: Arc::new(Ring {
                keys: HashMap::new(),
                harness: Some(forgotten),
            }),
        }
    }

    fn key(&self, subject: &str) -> Option<SubjectKey> {
        if let Some(forgotten) = &self.inner.harness {
            if forgotten.contains(subject) {
                return Some(SubjectKey::Forgotten);
            }
            let digest = Sha256::new()
                .chain_update(b"esrs.harness-key.v1")
                .chain_update(subject.as_bytes())
                .finalize();
            let mut bytes = [0u8; KEY_LEN];
            bytes.copy_from_slice(&digest);
            return Some(SubjectKey::Key(DataKey::from_bytes(bytes)));
        }
        self.inner.keys.get(subject).cloned()
    }

    /// Runs `f` (an encode or a decode of `stream`'s events) with this ring's keys.
    pub fn scope<R>(&self, stream: &StreamId, f: impl FnOnce() -> R) -> R {
        let previous = SCOPE.with(|scope| {
            scope.borrow_mut().replace(Scope {
                stream: stream.as_str().into(),
                ring: self.clone(),
                event: None,
            })
        });
        let _restore = Restore(Some(previous));
        f()
    }

    /// Encodes `event` for `stream` with this ring's keys.
    pub fn encode<E: EventSet>(
        &self,
        stream: &StreamId,
        event: &E,
    ) -> Result<NewEvent, EncodeError> {
        self.scope(stream, || NewEvent::encode(event))
    }

    /// Decodes `recorded` with this ring's keys (fetched with [`KeyRing::for_payload`]).
    pub fn decode<E: EventSet>(&self, recorded: &RecordedEvent) -> Result<E, DecodeError> {
        self.decode_payload(
            &recorded.stream,
            &recorded.name,
            recorded.schema_version,
            &recorded.payload,
        )
    }

    /// Runs `f`, the decode of an event of `stream` stored under `name` (the row's name,
    /// which may be an alias), with this ring's keys.
    pub fn scope_decode<R>(&self, stream: &StreamId, name: &str, f: impl FnOnce() -> R) -> R {
        self.scope(stream, || with_event(name, Vec::new(), f).0)
    }

    /// Decodes a stored payload of `stream`, stored under `name` at `version`.
    pub fn decode_payload<E: EventSet>(
        &self,
        stream: &StreamId,
        name: &str,
        version: u32,
        payload: &str,
    ) -> Result<E, DecodeError> {
        self.scope_decode(stream, name, || E::decode(name, version, payload))
    }
}

thread_local! {
    /// The subjects a given/when/then test on this thread has forgotten.
    static HARNESS_FORGOTTEN: RefCell<HashSet<String>> = RefCell::new(HashSet::new());
}

/// The stream the given/when/then harness encodes its events for.
const HARNESS_STREAM: &str = "given-when-then";

/// Runs `f`, an encode of the test harness, with its deterministic ring.
pub(crate) fn in_harness<R>(f: impl FnOnce() -> R) -> R {
    let forgotten = HARNESS_FORGOTTEN.with(|set| set.borrow().clone());
    KeyRing::harness(forgotten).scope(&StreamId::from_stored(HARNESS_STREAM), f)
}

/// Runs `f`, a decode of the test harness of an event stored under `name`.
pub(crate) fn in_harness_decode<R>(name: &str, f: impl FnOnce() -> R) -> R {
    let forgotten = HARNESS_FORGOTTEN.with(|set| set.borrow().clone());
    KeyRing::harness(forgotten).scope_decode(&StreamId::from_stored(HARNESS_STREAM), name, f)
}

/// Marks `subject` forgotten for the rest of this thread's test.
pub(crate) fn harness_forget(subject: &str) {
    HARNESS_FORGOTTEN.with(|set| set.borrow_mut().insert(subject.to_owned()));
}

/// Starts a new test on this thread: no subject is forgotten.
pub(crate) fn harness_reset() {
    HARNESS_FORGOTTEN.with(|set| {
        if !set.borrow().is_empty() {
            set.borrow_mut().clear();
        }
    });
}

/// Puts the previous scope back, also when the scoped call panics.
struct Restore(Option<Option<Scope>>);

impl Drop for Restore {
    fn drop(&mut self) {
        if let Some(previous) = self.0.take() {
            SCOPE.with(|scope| *scope.borrow_mut() = previous);
        }
    }
}

struct Scope {
    stream: Box<str>,
    ring: KeyRing,
    event: Option<EventScope>,
}

/// The event being encoded or decoded.
struct EventScope {
    /// Its stored name (for decoding: the name of the row, which may be an alias).
    name: Box<str>,
    /// Encoding: its personal fields, found by address when `Personal` serializes, and
    /// whether each was written.
    fields: Vec<(PersonalField, bool)>,
}

thread_local! {
    static SCOPE: RefCell<Option<Scope>> = const { RefCell::new(None) };
    /// The typed reason of the last personal-data failure, which serde can only carry as
    /// text; taken back by the encode and decode wrappers.
    static PENDING: RefCell<Option<Failure>> = const { RefCell::new(None) };
}

/// A personal-data failure on its way through serde.
struct Failure {
    field: String,
    subject: String,
    reason: PersonalDataError,
}

/// The text serde carries for a personal-data failure; the wrappers recognise it.
const MARKER: &str = "esrs personal data: ";

fn fail(field: &str, subject: &str, reason: PersonalDataError) -> String {
    let text = format!("{MARKER}{reason}");
    PENDING.with(|pending| {
        *pending.borrow_mut() = Some(Failure {
            field: field.to_owned(),
            subject: subject.to_owned(),
            reason,
        })
    });
    text
}

fn take_failure(error: &serde_json::Error) -> Option<Failure> {
    if !error.to_string().contains(MARKER) {
        return None;
    }
    PENDING.with(|pending| pending.borrow_mut().take())
}

/// Runs `f` as the encode or decode of event `name` in the current scope; returns its
/// result and, when in a scope, the fields whose `Personal` value never serialized.
fn with_event<R>(
    name: &str,
    fields: Vec<PersonalField>,
    f: impl FnOnce() -> R,
) -> (R, Option<Vec<PersonalField>>) {
    let previous = SCOPE.with(|scope| {
        scope.borrow_mut().as_mut().map(|scope| {
            scope.event.replace(EventScope {
                name: name.into(),
                fields: fields.into_iter().map(|f| (f, false)).collect(),
            })
        })
    });
    let Some(previous) = previous else {
        return (f(), None);
    };
    let result = f();
    let event = SCOPE.with(|scope| {
        scope
            .borrow_mut()
            .as_mut()
            .and_then(|scope| std::mem::replace(&mut scope.event, previous))
    });
    let unwritten = event.map(|event| {
        event
            .fields
            .into_iter()
            .filter(|(_, used)| !used)
            .map(|(f, _)| f)
            .collect()
    });
    (result, unwritten)
}

/// Encodes event `T` (with personal fields) inside the current scope: its personal fields
/// are encrypted with their subjects' keys; outside a scope, it is refused.
pub(crate) fn encode_personal<T: Event + Serialize>(
    name: &'static str,
    event: &T,
) -> Result<crate::event::Payload, EncodeError> {
    let fields = event.personal_fields();
    let refuse = |field: &PersonalField, reason| EncodeError::Personal {
        name,
        field: field.name.into(),
        subject: field.subject.as_str().into(),
        reason,
    };
    for field in &fields {
        if field.subject.is_empty() {
            return Err(refuse(field, PersonalDataError::EmptySubject));
        }
    }
    let in_scope = SCOPE.with(|scope| scope.borrow().is_some());
    if !in_scope {
        return match fields.first() {
            Some(field) => Err(refuse(field, PersonalDataError::NoKeys)),
            None => crate::event::encode_json(name, event),
        };
    }
    let (result, rest) = with_event(name, fields, || crate::event::encode_json(name, event));
    match result {
        Ok(payload) => {
            if let Some(field) = rest.and_then(|unwritten| unwritten.into_iter().next()) {
                return Err(refuse(&field, PersonalDataError::NotWritten));
            }
            Ok(payload)
        }
        Err(EncodeError::Json { source, .. }) => match take_failure(&source) {
            Some(failure) => Err(EncodeError::Personal {
                name,
                field: failure.field.into(),
                subject: failure.subject.into(),
                reason: failure.reason,
            }),
            None => Err(EncodeError::Json { name, source }),
        },
        Err(other) => Err(other),
    }
}

/// Decodes event `T` from `payload`, then checks that every ciphertext read sits in the
/// field and under the subject it was sealed for.
pub(crate) fn parse_personal<T: Event + DeserializeOwned>(
    version: u32,
    payload: &str,
) -> Result<T, DecodeError> {
    let parsed = serde_json::from_str::<T>(payload);
    let event_name = current_event().unwrap_or_else(|| T::NAME.to_owned());
    let value = match parsed {
        Ok(value) => value,
        Err(source) => {
            return Err(match take_failure(&source) {
                Some(failure) => DecodeError::PersonalData {
                    event: event_name.into(),
                    field: failure.field.into(),
                    subject: failure.subject.into(),
                    reason: failure.reason,
                },
                None => DecodeError::Malformed {
                    name: T::NAME,
                    version,
                    source,
                },
            });
        }
    };
    // Each ciphertext was authenticated for the field and subject its envelope names; it
    // must also sit in that field, of an event of that subject.
    let fields = value.personal_fields();
    let Ok(top) = serde_json::from_str::<BTreeMap<String, &RawValue>>(payload) else {
        return Ok(value);
    };
    for (key, item) in &top {
        if !item.get().contains("$personal") {
            continue;
        }
        let Ok(serde_json::Value::Object(map)) = serde_json::from_str(item.get()) else {
            continue;
        };
        let Some(envelope) = map.get("$personal").filter(|_| map.len() == 1) else {
            continue;
        };
        let text = |part: &str| {
            envelope
                .get(part)
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let (field, subject) = (text("f"), text("s"));
        let placed = field == *key
            && fields
                .iter()
                .any(|f| f.name == key.as_str() && f.subject == subject);
        if !placed {
            return Err(DecodeError::PersonalData {
                event: event_name.into(),
                field: field.into(),
                subject: subject.into(),
                reason: PersonalDataError::Misplaced,
            });
        }
    }
    Ok(value)
}

fn current_event() -> Option<String> {
    SCOPE.with(|scope| {
        scope
            .borrow()
            .as_ref()
            .and_then(|scope| scope.event.as_ref())
            .map(|event| event.name.to_string())
    })
}

/// The stored form of an encrypted field: `{"$personal": {...}}`.
#[derive(Serialize, Deserialize)]
struct Sealed<S> {
    #[serde(rename = "$personal")]
    personal: Envelope<S>,
}

/// Version, subject, field, nonce and ciphertext of one field value.
#[derive(Serialize, Deserialize)]
struct Envelope<S> {
    v: u32,
    s: S,
    f: S,
    n: String,
    c: String,
}

/// The stored form of a forgotten value: `{"$forgotten": true}`.
#[derive(Serialize)]
struct ForgottenMark {
    #[serde(rename = "$forgotten")]
    forgotten: bool,
}

/// The envelope version this code writes and reads.
const ENVELOPE_VERSION: u32 = 1;

impl<T: Serialize> Serialize for Personal<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let address = std::ptr::from_ref(self).cast::<()>().addr();
        // What this value is sealed with, taken out of the scope so that serializing the
        // value itself may look at the scope again.
        let target = SCOPE.with(|scope| {
            let mut scope = scope.borrow_mut();
            let scope = scope.as_mut()?;
            let stream = scope.stream.to_string();
            let ring = scope.ring.clone();
            let event = scope.event.as_mut()?;
            let name = event.name.to_string();
            Some(
                match event.fields.iter_mut().find(|(f, _)| f.address == address) {
                    Some((field, used)) => {
                        *used = true;
                        Ok((stream, ring, name, field.name, field.subject.clone()))
                    }
                    None => Err(()),
                },
            )
        });
        let value = match self {
            // Nothing to seal: the value is gone for good.
            Personal::Forgotten => return ForgottenMark { forgotten: true }.serialize(serializer),
            Personal::Known(value) => value,
        };
        let (stream, ring, event, field, subject) = match target {
            // Outside an event's encode (a snapshot, an API response): the value itself.
            None => return value.serialize(serializer),
            Some(Err(())) => {
                return Err(serde::ser::Error::custom(fail(
                    "",
                    "",
                    PersonalDataError::NotMarked,
                )));
            }
            Some(Ok(target)) => target,
        };
        let key = match ring.key(&subject) {
            Some(SubjectKey::Key(key)) => key,
            Some(SubjectKey::Forgotten) => {
                return Err(serde::ser::Error::custom(fail(
                    field,
                    &subject,
                    PersonalDataError::SubjectForgotten,
                )));
            }
            _ => {
                return Err(serde::ser::Error::custom(fail(
                    field,
                    &subject,
                    PersonalDataError::NoKeys,
                )));
            }
        };
        let plaintext = serde_json::to_vec(value).map_err(serde::ser::Error::custom)?;
        let aad = field_aad(&stream, &event, field, &subject);
        let (nonce, sealed) = if ring.inner.harness.is_some() {
            let digest = Sha256::new()
                .chain_update(key.as_bytes())
                .chain_update(&aad)
                .chain_update(&plaintext)
                .finalize();
            let mut nonce = [0u8; NONCE_LEN];
            nonce.copy_from_slice(&digest[..NONCE_LEN]);
            key.seal_with(nonce, &aad, &plaintext)
        } else {
            key.seal(&aad, &plaintext)
        };
        Sealed {
            personal: Envelope {
                v: ENVELOPE_VERSION,
                s: subject.as_str(),
                f: field,
                n: BASE64.encode(nonce),
                c: BASE64.encode(sealed),
            },
        }
        .serialize(serializer)
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Personal<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        if let serde_json::Value::Object(map) = &value {
            if map.len() == 1 {
                if let Some(envelope) = map.get("$personal") {
                    return open(envelope).map_err(serde::de::Error::custom);
                }
                if map.get("$forgotten") == Some(&serde_json::Value::Bool(true)) {
                    return Ok(Personal::Forgotten);
                }
            }
        }
        T::deserialize(value)
            .map(Personal::Known)
            .map_err(serde::de::Error::custom)
    }
}

/// Opens a stored envelope in the current scope.
fn open<T: DeserializeOwned>(envelope: &serde_json::Value) -> Result<Personal<T>, String> {
    let envelope = Envelope::<String>::deserialize(envelope)
        .map_err(|e| fail("", "", PersonalDataError::Malformed(e.to_string().into())))?;
    let (field, subject) = (envelope.f.as_str(), envelope.s.as_str());
    if envelope.v != ENVELOPE_VERSION {
        return Err(fail(
            field,
            subject,
            PersonalDataError::UnsupportedVersion(envelope.v),
        ));
    }
    let context = SCOPE.with(|scope| {
        let scope = scope.borrow();
        let scope = scope.as_ref()?;
        let event = scope.event.as_ref()?;
        Some((
            scope.stream.to_string(),
            event.name.to_string(),
            scope.ring.clone(),
        ))
    });
    let Some((stream, event, ring)) = context else {
        return Err(fail(field, subject, PersonalDataError::NoKeys));
    };
    let key = match ring.key(subject) {
        Some(SubjectKey::Key(key)) => key,
        Some(SubjectKey::Forgotten) => return Ok(Personal::Forgotten),
        Some(SubjectKey::Unknown) => {
            return Err(fail(field, subject, PersonalDataError::UnknownSubject));
        }
        None => return Err(fail(field, subject, PersonalDataError::NoKeys)),
    };
    let (Ok(nonce), Ok(sealed)) = (BASE64.decode(&envelope.n), BASE64.decode(&envelope.c)) else {
        return Err(fail(
            field,
            subject,
            PersonalDataError::Malformed("the nonce or ciphertext is not base64".into()),
        ));
    };
    let aad = field_aad(&stream, &event, field, subject);
    let Some(plaintext) = key.open(&nonce, &aad, &sealed) else {
        return Err(fail(
            field,
            subject,
            PersonalDataError::AuthenticationFailed,
        ));
    };
    let value = serde_json::from_slice::<T>(&plaintext).map_err(|e| {
        fail(
            field,
            subject,
            PersonalDataError::Plaintext(e.to_string().into()),
        )
    })?;
    Ok(Personal::Known(value))
}

/// The subjects whose personal data a stored payload holds, from its envelopes; empty,
/// after one scan of the text, for a payload without any.
pub fn subjects_in(payload: &str) -> Vec<String> {
    if !payload.contains("\"$personal\"") {
        return Vec::new();
    }
    let Ok(value) = serde_json::from_str::<serde_json::Value>(payload) else {
        return Vec::new();
    };
    let mut subjects = Vec::new();
    collect_subjects(&value, &mut subjects);
    subjects
}

fn collect_subjects(value: &serde_json::Value, subjects: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::String(subject)) =
                map.get("$personal").and_then(|envelope| envelope.get("s"))
            {
                if !subjects.contains(subject) {
                    subjects.push(subject.clone());
                }
                return;
            }
            for item in map.values() {
                collect_subjects(item, subjects);
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                collect_subjects(item, subjects);
            }
        }
        _ => {}
    }
}
