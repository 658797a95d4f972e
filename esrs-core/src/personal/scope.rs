//! The synchronous context in which personal fields are encrypted and decrypted.
//!
//! Encoding and decoding are synchronous (serde), key stores are asynchronous: the caller
//! fetches the keys of the subjects involved first, into a [`KeyRing`], and then encodes or
//! decodes inside [`KeyRing`]'s scope, a thread-local set for the duration of the call that
//! [`Personal`]'s `Serialize` and `Deserialize` read. An event type without personal fields
//! never looks at it.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::de::{DeserializeOwned, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::envelope::{NewEvent, RecordedEvent};
use crate::error::EncodeError;
use crate::event::{DecodeError, EventSet};
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
    /// Decoding: the field and subject of every envelope opened, in the order read.
    opened: Vec<(Box<str>, Box<str>)>,
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
                opened: Vec::new(),
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
pub(crate) fn encode_personal<T: Serialize + ?Sized>(
    name: &'static str,
    fields: Vec<PersonalField>,
    event: &T,
) -> Result<crate::event::Payload, EncodeError> {
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

/// Decodes event `T`, stored under `name`, from `payload`, then checks that every
/// ciphertext read sits in the field and under the subject it was sealed for; `fields`
/// gives the personal fields of a decoded event.
pub(crate) fn parse_personal<T: DeserializeOwned>(
    name: &'static str,
    version: u32,
    payload: &str,
    fields: fn(&T) -> Vec<PersonalField>,
) -> Result<T, DecodeError> {
    // An upcast decodes the older version inside this decode: each looks at its own.
    let mark = with_opened(|opened| opened.len()).unwrap_or(0);
    let parsed = serde_json::from_str::<T>(payload);
    let opened = with_opened(|opened| opened.split_off(mark.min(opened.len()))).unwrap_or_default();
    let event_name = || current_event().unwrap_or_else(|| name.to_owned());
    let value = match parsed {
        Ok(value) => value,
        Err(source) => {
            return Err(match take_failure(&source) {
                Some(failure) => DecodeError::PersonalData {
                    event: event_name().into(),
                    field: failure.field.into(),
                    subject: failure.subject.into(),
                    reason: failure.reason,
                },
                None => DecodeError::Malformed {
                    name,
                    version,
                    source,
                },
            });
        }
    };
    if opened.is_empty() {
        // No ciphertext was read: nothing can be misplaced.
        return Ok(value);
    }
    match misplaced(payload, &fields(&value), &opened) {
        None => Ok(value),
        Some((field, subject)) => Err(DecodeError::PersonalData {
            event: event_name().into(),
            field: field.into(),
            subject: subject.into(),
            reason: PersonalDataError::Misplaced,
        }),
    }
}

/// The field and subject of a ciphertext that does not sit where it was sealed for, if
/// any: each envelope must be the whole value of a top-level member named like the field
/// it names, a field marked personal of the envelope's subject; and every envelope opened
/// while decoding must be one of those (none nested elsewhere).
fn misplaced(
    payload: &str,
    fields: &[PersonalField],
    opened: &[(Box<str>, Box<str>)],
) -> Option<(String, String)> {
    let Ok(TopEnvelopes(top)) = serde_json::from_str::<TopEnvelopes<'_>>(payload) else {
        // The payload decoded as the event a moment ago; it is JSON.
        return opened
            .first()
            .map(|(field, subject)| (field.to_string(), subject.to_string()));
    };
    for (key, envelope) in &top {
        let placed = envelope.f == *key
            && fields
                .iter()
                .any(|f| f.name == key.as_ref() && f.subject == envelope.s);
        if !placed {
            return Some((envelope.f.to_string(), envelope.s.to_string()));
        }
    }
    if top.len() != opened.len() {
        let outside = opened.iter().find(|(field, subject)| {
            !top.iter()
                .any(|(_, e)| e.f == field.as_ref() && e.s == subject.as_ref())
        });
        let (field, subject) = outside.or(opened.first())?;
        return Some((field.to_string(), subject.to_string()));
    }
    None
}

/// Runs `f` on the envelopes opened so far in the current event's decode.
fn with_opened<R>(f: impl FnOnce(&mut Vec<(Box<str>, Box<str>)>) -> R) -> Option<R> {
    SCOPE.with(|scope| {
        let mut scope = scope.borrow_mut();
        let event = scope.as_mut()?.event.as_mut()?;
        Some(f(&mut event.opened))
    })
}

/// The top-level members of a payload whose value is an envelope, read in one pass that
/// skips every other value without building it.
struct TopEnvelopes<'a>(Vec<(Cow<'a, str>, EnvelopeIn<'a>)>);

/// A key as the text has it: borrowed unless it holds escapes.
#[derive(Deserialize)]
struct Key<'a>(#[serde(borrow)] Cow<'a, str>);

impl<'de> Deserialize<'de> for TopEnvelopes<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = TopEnvelopes<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an event payload (a JSON object)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut found = Vec::new();
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    if let MaybeEnvelope(Some(envelope)) = map.next_value()? {
                        found.push((key, envelope));
                    }
                }
                Ok(TopEnvelopes(found))
            }
        }
        deserializer.deserialize_map(Members)
    }
}

/// A value that is an envelope (an object whose one member is `$personal` with an
/// envelope's shape), or anything else, skipped.
struct MaybeEnvelope<'a>(Option<EnvelopeIn<'a>>);

impl<'de> Deserialize<'de> for MaybeEnvelope<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Any;
        impl<'de> Visitor<'de> for Any {
            type Value = MaybeEnvelope<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut envelope = None;
                let mut members = 0;
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    members += 1;
                    if members == 1 && key == TAG {
                        let raw = map.next_value::<&'de RawValue>()?;
                        envelope = serde_json::from_str::<EnvelopeIn<'de>>(raw.get()).ok();
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(MaybeEnvelope(envelope.filter(|_| members == 1)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(MaybeEnvelope(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(MaybeEnvelope(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(MaybeEnvelope(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(MaybeEnvelope(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(MaybeEnvelope(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(MaybeEnvelope(None))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(MaybeEnvelope(None))
            }
        }
        deserializer.deserialize_any(Any)
    }
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

/// The key of the envelope object, the one member of an encrypted field's value.
const TAG: &str = "$personal";

/// The stored form of an encrypted field: `{"$personal": {...}}`.
#[derive(Serialize)]
struct Sealed<'a> {
    #[serde(rename = "$personal")]
    personal: Envelope<'a>,
}

/// Version, subject, field, nonce and ciphertext of one field value, as written.
#[derive(Serialize)]
struct Envelope<'a> {
    v: u32,
    s: &'a str,
    f: &'a str,
    n: &'a str,
    c: &'a str,
}

/// An envelope as read: its texts borrowed from the payload where they hold no escapes.
#[derive(Deserialize)]
struct EnvelopeIn<'a> {
    v: u32,
    #[serde(borrow)]
    s: Cow<'a, str>,
    #[serde(borrow)]
    f: Cow<'a, str>,
    #[serde(borrow)]
    n: Cow<'a, str>,
    #[serde(borrow)]
    c: Cow<'a, str>,
}

impl EnvelopeIn<'_> {
    fn to_value(&self) -> serde_json::Value {
        serde_json::json!({ "v": self.v, "s": self.s, "f": self.f, "n": self.n, "c": self.c })
    }
}

/// The stored form of a forgotten value: `{"$forgotten": true}`.
#[derive(Serialize)]
struct ForgottenMark {
    #[serde(rename = "$forgotten")]
    forgotten: bool,
}

/// The key of the forgotten mark.
const FORGOTTEN_TAG: &str = "$forgotten";

/// The envelope version this code writes and reads.
const ENVELOPE_VERSION: u32 = 1;

/// What a `Personal` value serializing inside an event's encode is sealed with.
struct Target {
    key: DataKey,
    aad: Vec<u8>,
    field: &'static str,
    subject: String,
    /// The harness derives nonces, so that its encodings repeat.
    derived_nonce: bool,
}

impl<T: Serialize> Serialize for Personal<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let address = std::ptr::from_ref(self).cast::<()>().addr();
        let forgotten = self.is_forgotten();
        // What this value is sealed with, found while the scope is borrowed; the value
        // itself serializes after, so that it may look at the scope again.
        let target = SCOPE.with(|scope| {
            let mut scope = scope.borrow_mut();
            let scope = scope.as_mut()?;
            let event = scope.event.as_mut()?;
            let Some((field, used)) = event.fields.iter_mut().find(|(f, _)| f.address == address)
            else {
                return Some(Err(fail("", "", PersonalDataError::NotMarked)));
            };
            *used = true;
            if forgotten {
                return None;
            }
            let (name, subject) = (field.name, field.subject.as_str());
            Some(match scope.ring.key(subject) {
                Some(SubjectKey::Key(key)) => Ok(Target {
                    aad: field_aad(&scope.stream, &event.name, name, subject),
                    key,
                    field: name,
                    subject: subject.to_owned(),
                    derived_nonce: scope.ring.inner.harness.is_some(),
                }),
                Some(SubjectKey::Forgotten) => {
                    Err(fail(name, subject, PersonalDataError::SubjectForgotten))
                }
                _ => Err(fail(name, subject, PersonalDataError::NoKeys)),
            })
        });
        let value = match self {
            // Nothing to seal: the value is gone for good.
            Personal::Forgotten => return ForgottenMark { forgotten: true }.serialize(serializer),
            Personal::Known(value) => value,
        };
        let target = match target {
            // Outside an event's encode (a snapshot, an API response): the value itself.
            None => return value.serialize(serializer),
            Some(Err(text)) => return Err(serde::ser::Error::custom(text)),
            Some(Ok(target)) => target,
        };
        let plaintext = serde_json::to_vec(value).map_err(serde::ser::Error::custom)?;
        let (nonce, sealed) = if target.derived_nonce {
            let digest = Sha256::new()
                .chain_update(target.key.as_bytes())
                .chain_update(&target.aad)
                .chain_update(&plaintext)
                .finalize();
            let mut nonce = [0u8; NONCE_LEN];
            nonce.copy_from_slice(&digest[..NONCE_LEN]);
            target.key.seal_with(nonce, &target.aad, &plaintext)
        } else {
            target.key.seal(&target.aad, &plaintext)
        };
        let mut nonce_text = [0u8; 32];
        let nonce_len = BASE64
            .encode_slice(nonce, &mut nonce_text)
            .map_err(serde::ser::Error::custom)?;
        Sealed {
            personal: Envelope {
                v: ENVELOPE_VERSION,
                s: &target.subject,
                f: target.field,
                // Base64 is ASCII.
                n: std::str::from_utf8(&nonce_text[..nonce_len]).unwrap_or_default(),
                c: &BASE64.encode(sealed),
            },
        }
        .serialize(serializer)
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Personal<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PersonalVisitor(std::marker::PhantomData))
    }
}

/// Reads an envelope, a forgotten mark, or the value in clear (written before the field
/// was marked personal). An object whose first member is `$personal` is an envelope.
struct PersonalVisitor<T>(std::marker::PhantomData<T>);

/// The value in clear.
fn clear<T: DeserializeOwned, E: serde::de::Error>(
    value: serde_json::Value,
) -> Result<Personal<T>, E> {
    T::deserialize(value)
        .map(Personal::Known)
        .map_err(E::custom)
}

impl<'de, T: DeserializeOwned> Visitor<'de> for PersonalVisitor<T> {
    type Value = Personal<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a personal-data envelope, a forgotten mark, or the value in clear")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        use serde::de::Error as _;
        let mut object = serde_json::Map::new();
        match map.next_key::<Key<'de>>()? {
            None => return clear(serde_json::Value::Object(object)),
            Some(Key(key)) if key == TAG => {
                let envelope = map.next_value::<EnvelopeIn<'de>>().map_err(|e| {
                    A::Error::custom(fail(
                        "",
                        "",
                        PersonalDataError::Malformed(e.to_string().into()),
                    ))
                })?;
                match map.next_key::<String>()? {
                    None => return open(&envelope).map_err(A::Error::custom),
                    // Other members: not an envelope after all, but a value in clear.
                    Some(next) => {
                        object.insert(TAG.to_owned(), envelope.to_value());
                        object.insert(next, map.next_value()?);
                    }
                }
            }
            Some(Key(key)) if key == FORGOTTEN_TAG => {
                let mark = map.next_value::<serde_json::Value>()?;
                match map.next_key::<String>()? {
                    None if mark == serde_json::Value::Bool(true) => {
                        return Ok(Personal::Forgotten);
                    }
                    None => {
                        object.insert(FORGOTTEN_TAG.to_owned(), mark);
                    }
                    Some(next) => {
                        object.insert(FORGOTTEN_TAG.to_owned(), mark);
                        object.insert(next, map.next_value()?);
                    }
                }
            }
            Some(Key(key)) => {
                let value = map.next_value()?;
                object.insert(key.into_owned(), value);
            }
        }
        while let Some((key, value)) = map.next_entry::<String, serde_json::Value>()? {
            object.insert(key, value);
        }
        clear(serde_json::Value::Object(object))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<serde_json::Value>()? {
            items.push(item);
        }
        clear(serde_json::Value::Array(items))
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
        clear(v.into())
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        clear(v.into())
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
        clear(v.into())
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
        clear(v.into())
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        clear(v.into())
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
        clear(v.into())
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        clear(serde_json::Value::Null)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        clear(serde_json::Value::Null)
    }
}

/// Opens a stored envelope in the current scope.
fn open<T: DeserializeOwned>(envelope: &EnvelopeIn<'_>) -> Result<Personal<T>, String> {
    let (field, subject) = (envelope.f.as_ref(), envelope.s.as_ref());
    if envelope.v != ENVELOPE_VERSION {
        return Err(fail(
            field,
            subject,
            PersonalDataError::UnsupportedVersion(envelope.v),
        ));
    }
    // The key and the associated data, found while the scope is borrowed; the envelope
    // is recorded for the placement check.
    let context = SCOPE.with(|scope| {
        let mut scope = scope.borrow_mut();
        let scope = scope.as_mut()?;
        let event = scope.event.as_mut()?;
        event.opened.push((field.into(), subject.into()));
        Some((
            scope.ring.key(subject),
            field_aad(&scope.stream, &event.name, field, subject),
        ))
    });
    let Some((key, aad)) = context else {
        return Err(fail(field, subject, PersonalDataError::NoKeys));
    };
    let key = match key {
        Some(SubjectKey::Key(key)) => key,
        Some(SubjectKey::Forgotten) => return Ok(Personal::Forgotten),
        Some(SubjectKey::Unknown) => {
            return Err(fail(field, subject, PersonalDataError::UnknownSubject));
        }
        None => return Err(fail(field, subject, PersonalDataError::NoKeys)),
    };
    let mut nonce = [0u8; NONCE_LEN];
    let decoded = (
        BASE64.decode_slice(envelope.n.as_bytes(), &mut nonce),
        BASE64.decode(envelope.c.as_bytes()),
    );
    let (Ok(NONCE_LEN), Ok(mut buffer)) = decoded else {
        return Err(fail(
            field,
            subject,
            PersonalDataError::Malformed("the nonce or ciphertext is not base64".into()),
        ));
    };
    if !key.open_in_place(&nonce, &aad, &mut buffer) {
        return Err(fail(
            field,
            subject,
            PersonalDataError::AuthenticationFailed,
        ));
    }
    let value = serde_json::from_slice::<T>(&buffer).map_err(|e| {
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
    let quoted_tag = "\"$personal\"";
    if payload.contains("\\u") {
        // A key may be spelled with escapes: read the whole value.
        let Ok(value) = serde_json::from_str::<serde_json::Value>(payload) else {
            return Vec::new();
        };
        let mut subjects = Vec::new();
        collect_subjects(&value, &mut subjects);
        return subjects;
    }
    // Without escapes, every envelope's key is the literal `"$personal"` followed by a
    // colon (a string value is never followed by one), and its subject is read from there.
    #[derive(Deserialize)]
    struct Subject<'a> {
        #[serde(borrow)]
        s: Cow<'a, str>,
    }
    let mut subjects: Vec<String> = Vec::new();
    let mut rest = payload;
    while let Some(at) = rest.find(quoted_tag) {
        rest = &rest[at + quoted_tag.len()..];
        let Some(value) = rest.trim_start().strip_prefix(':') else {
            continue;
        };
        let mut deserializer = serde_json::Deserializer::from_str(value);
        if let Ok(Subject { s }) = Subject::deserialize(&mut deserializer) {
            if !subjects.iter().any(|known| *known == s) {
                subjects.push(s.into_owned());
            }
        }
    }
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
