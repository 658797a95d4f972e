//! Personal data that can be forgotten: per-subject encryption of marked event fields
//! (crypto-shredding).
//!
//! An event field marked `#[event(personal)]` has type [`Personal<T>`] and belongs to the
//! subject named by the event's `#[event(subject)]` field (a member id, a customer id):
//!
//! ```
//! use esrs_core::personal::Personal;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(esrs_core::Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
//! #[event(name = "MemberJoined")]
//! struct MemberJoined {
//!     #[event(subject)]
//!     member_id: String,
//!     #[event(personal)]
//!     name: Personal<String>,
//!     #[event(personal)]
//!     email: Personal<String>,
//!     plan: String,
//! }
//! ```
//!
//! - **Encoding** seals each personal field with XChaCha20-Poly1305 under the subject's data
//!   key, a fresh random nonce per value, and associated data made of the stream id, the
//!   event's stored name, the field's name and the subject, so a ciphertext copied into
//!   another stream, event or field fails authentication
//!   ([`PersonalDataError::AuthenticationFailed`], [`PersonalDataError::Misplaced`]). The
//!   stored field is `{"$personal": {"v": 1, "s": subject, "f": field, "n": nonce, "c":
//!   ciphertext}}`; the subject field stays in clear (it identifies, it is not the data).
//! - **Keys** live in a [`KeyStore`]: [`InMemoryKeyStore`] here, `esrs_postgres::PgKeyStore`
//!   in PostgreSQL, where keys are wrapped by a [`MasterKey`] the application supplies.
//!   [`Repository::with_key_store`](crate::Repository::with_key_store) and
//!   [`ProjectionRunner::with_key_store`](crate::ProjectionRunner::with_key_store) use it.
//! - **Forgetting** a subject ([`forget`]) deletes its key, records for good that it is
//!   forgotten, and deletes the snapshots of every stream its data was written to (a
//!   snapshot holds the state in clear). From then on its fields decode as
//!   [`Personal::Forgotten`]: aggregates still load, projections still run and rebuild,
//!   with the data redacted, never an error.
//! - **Tests**: the given/when/then harness encrypts with deterministic test keys;
//!   [`Given::and_forget`](crate::testing::Given::and_forget) tests the forgotten state.
//!
//! # What is and is not covered
//!
//! Only `Personal` fields of events are encrypted. Snapshots are deleted on forget rather
//! than encrypted, so a snapshot written in another process that still had the key cached
//! (`PgKeyStore`'s cache, 30 s by default) after the forget keeps the data until the next
//! [`forget`] of the subject (which is idempotent and deletes the snapshots again) or until
//! it is replaced. States held in a [`Repository::with_cache`](crate::Repository::with_cache)
//! cache keep the data until evicted or [`clear_cache`](crate::Repository::clear_cache)d.
//! Read models hold whatever their projections copied: a projection of `Personal` values
//! shows the redaction once rebuilt. Rows written before a field was marked personal keep
//! their clear text (they decode as [`Personal::Known`]). A ciphertext is bound to its
//! stream, event name, field and subject, not to its version in the stream: two events of
//! the same name in one stream could swap their sealed values unnoticed.

mod cipher;
mod keystore;
mod memory;
mod scope;

use std::borrow::Cow;

pub use cipher::{DataKey, MasterKey, MasterKeyError};
pub use keystore::{ForgetOutcome, KeyFuture, KeyStore, KeyStoreError, SubjectKey, check_subject};
pub use memory::InMemoryKeyStore;
pub use scope::{KeyRing, subjects_in};

pub(crate) use scope::{
    encode_personal, harness_forget, harness_reset, in_harness, in_harness_decode, parse_personal,
};

use crate::store::EventStore;

/// A value of personal data: known, or forgotten after its subject's key was deleted.
///
/// The type of every event field marked `#[event(personal)]`. Commands build it with
/// [`Personal::new`]; handlers read it with [`known`](Personal::known) and must be ready
/// for [`Forgotten`](Personal::Forgotten). Its `Debug` never shows the value, so logging
/// an event does not leak it.
///
/// Stored, an encrypted value is an object whose one member is `$personal` (the envelope)
/// and a forgotten one is `{"$forgotten": true}`; a value stored in clear, before its field
/// was marked personal, still reads as known. A JSON object whose first member is
/// `$personal` is always read as an envelope.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Personal<T> {
    /// The value, decrypted.
    Known(T),
    /// The subject was forgotten: the value can never be read again.
    Forgotten,
}

impl<T> Personal<T> {
    /// A known value.
    pub fn new(value: T) -> Self {
        Self::Known(value)
    }

    /// The value, unless forgotten.
    pub fn known(&self) -> Option<&T> {
        match self {
            Self::Known(value) => Some(value),
            Self::Forgotten => None,
        }
    }

    /// The value, unless forgotten.
    pub fn into_known(self) -> Option<T> {
        match self {
            Self::Known(value) => Some(value),
            Self::Forgotten => None,
        }
    }

    /// Whether the value was forgotten.
    pub fn is_forgotten(&self) -> bool {
        matches!(self, Self::Forgotten)
    }
}

impl<T> From<T> for Personal<T> {
    fn from(value: T) -> Self {
        Self::Known(value)
    }
}

impl<T> std::fmt::Debug for Personal<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Known(_) => f.write_str("Known(<personal>)"),
            Self::Forgotten => f.write_str("Forgotten"),
        }
    }
}

impl<T: schemars::JsonSchema> schemars::JsonSchema for Personal<T> {
    fn schema_name() -> Cow<'static, str> {
        Cow::Owned(format!("Personal_{}", T::schema_name()))
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let known = generator.subschema_for::<T>();
        schemars::json_schema!({
            "anyOf": [
                {
                    "type": "object",
                    "required": ["$personal"],
                    "properties": {
                        "$personal": {
                            "type": "object",
                            "required": ["v", "s", "f", "n", "c"]
                        }
                    }
                },
                {
                    "type": "object",
                    "required": ["$forgotten"],
                    "properties": { "$forgotten": { "const": true } }
                },
                known
            ]
        })
    }
}

/// One personal field of an event value, as `#[derive(Event)]` lists it: its name, its
/// subject, and where the value is, which is how its `Serialize` finds it.
#[derive(Debug, Clone)]
pub struct PersonalField {
    pub(crate) name: &'static str,
    pub(crate) subject: String,
    pub(crate) address: usize,
}

impl PersonalField {
    /// The field `value`, named `name`, of `subject`; called by the derive.
    pub fn new<T>(value: &Personal<T>, name: &'static str, subject: String) -> Self {
        Self {
            name,
            subject,
            address: std::ptr::from_ref(value).cast::<()>().addr(),
        }
    }

    /// The field's name in the event type.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The subject the field's value belongs to.
    pub fn subject(&self) -> &str {
        &self.subject
    }
}

/// Why a personal field could not be written or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PersonalDataError {
    /// The ciphertext does not authenticate with the subject's key for this stream, event
    /// and field: it was altered, or copied from another stream, event or field.
    #[error(
        "the ciphertext does not authenticate for this stream, event and field: it was altered or copied from elsewhere"
    )]
    AuthenticationFailed,
    /// A ciphertext sealed for one field or subject was found in another field, or twice.
    #[error("a ciphertext sealed for this field and subject sits in another field of the event")]
    Misplaced,
    /// No key ring was in scope: the repository or runner has no key store.
    #[error(
        "the event holds personal data but no key store was given: use `Repository::with_key_store` or `ProjectionRunner::with_key_store`"
    )]
    NoKeys,
    /// The key store has neither a key nor a record that the subject was forgotten.
    #[error(
        "the key store has no key for the subject and no record that it was forgotten: is it the key store the events were written with?"
    )]
    UnknownSubject,
    /// New personal data of a forgotten subject was encoded.
    #[error("the subject was forgotten; its personal data cannot be stored again")]
    SubjectForgotten,
    /// The subject field's text is empty.
    #[error("the subject field is empty; a subject id is a non-empty text")]
    EmptySubject,
    /// A `Personal` value was serialized in an event outside a field marked
    /// `#[event(personal)]`, which has no subject.
    #[error("a `Personal` value sits outside a field marked #[event(personal)]")]
    NotMarked,
    /// A field marked `#[event(personal)]` was not written through `Personal`'s
    /// `Serialize` (a `#[serde(with = …)]` or a hand-written `Serialize`), so it would have
    /// been stored in clear.
    #[error("the personal field was not serialized through `Personal`; remove its serde codec")]
    NotWritten,
    /// The stored envelope is not of the shape esrs writes.
    #[error("malformed personal-data envelope: {0}")]
    Malformed(Box<str>),
    /// The stored envelope is of a version this program does not read.
    #[error("personal-data envelope version {0} is not supported")]
    UnsupportedVersion(u32),
    /// The decrypted value is not of the field's type.
    #[error("the decrypted value does not decode as the field's type: {0}")]
    Plaintext(Box<str>),
}

/// Forgets `subject`: deletes its key from `keys`, records that it is forgotten, and deletes
/// the snapshots of every stream its personal data was written to from `store`.
///
/// Idempotent: forgetting again deletes those snapshots again (see the
/// [module docs](self) for snapshots written meanwhile by other processes).
///
/// ```
/// # use esrs_core::personal::{forget, InMemoryKeyStore, KeyStore};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let keys = InMemoryKeyStore::new();
/// let store = esrs_core::InMemoryStore::new();
/// let outcome = forget(&keys, &store, "member-42").await?;
/// assert!(!outcome.already_forgotten);
/// assert!(keys.is_forgotten("member-42").await?);
/// # Ok(()) }
/// ```
pub async fn forget<S: EventStore>(
    keys: &dyn KeyStore,
    store: &S,
    subject: &str,
) -> crate::Result<ForgetOutcome> {
    let outcome = keys.forget(subject).await?;
    for stream in &outcome.streams {
        store.delete_snapshots(stream).await?;
    }
    tracing::info!(
        subject,
        streams = outcome.streams.len(),
        already = outcome.already_forgotten,
        "forgot a subject's personal data"
    );
    Ok(outcome)
}
