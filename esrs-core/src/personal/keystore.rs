//! Where subjects' data keys live: the [`KeyStore`] trait and its errors.

use std::future::Future;
use std::pin::Pin;

use crate::BoxError;
use crate::stream::StreamId;

use super::cipher::DataKey;

/// The future a [`KeyStore`] method returns.
pub type KeyFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, KeyStoreError>> + Send + 'a>>;

/// What a key store knows of a subject, for reading.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SubjectKey {
    /// The subject's data key: its personal fields decrypt.
    Key(DataKey),
    /// The subject was forgotten: its key is gone for good and its fields read as
    /// [`Personal::Forgotten`](crate::personal::Personal::Forgotten).
    Forgotten,
    /// The store has neither a key nor a record that the subject was forgotten. Events
    /// holding the subject's data were written with another key store (or its key table was
    /// lost): decoding them is an error, never a silent redaction.
    Unknown,
}

/// What [`KeyStore::forget`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ForgetOutcome {
    /// The streams personal data of the subject was written to, as recorded by
    /// [`KeyStore::key_for_writing`]: their snapshots may hold the data in clear and are
    /// deleted by [`forget`](crate::personal::forget).
    pub streams: Vec<StreamId>,
    /// Whether the subject had already been forgotten (forgetting again changes nothing).
    pub already_forgotten: bool,
}

impl ForgetOutcome {
    /// An outcome; used by key store implementations.
    pub fn new(streams: Vec<StreamId>, already_forgotten: bool) -> Self {
        Self {
            streams,
            already_forgotten,
        }
    }
}

/// Keeps one data key per subject, and the list of forgotten subjects.
///
/// A subject's key is created the first time personal data of the subject is written
/// ([`key_for_writing`](Self::key_for_writing)) and deleted by
/// [`forget`](Self::forget), which also records, for good, that the subject is forgotten:
/// that record outlives the key, so a key restored from a backup is never used again, and a
/// forgotten subject cannot get a new key.
///
/// The methods return boxed futures so that a store can be held as `Arc<dyn KeyStore>` by
/// [`Repository`](crate::Repository) and [`ProjectionRunner`](crate::ProjectionRunner)
/// without another type parameter. Implementations: [`InMemoryKeyStore`](crate::personal::InMemoryKeyStore),
/// and `esrs_postgres::PgKeyStore`.
pub trait KeyStore: Send + Sync + 'static {
    /// The key of `subject` for writing its data to `stream`, created on first use. The
    /// store records that `stream` holds the subject's data (see [`ForgetOutcome::streams`]).
    /// A forgotten subject is refused with [`KeyStoreError::SubjectForgotten`].
    fn key_for_writing<'a>(
        &'a self,
        subject: &'a str,
        stream: &'a StreamId,
    ) -> KeyFuture<'a, DataKey>;

    /// What the store knows of `subject` for reading its data.
    fn key_for_reading<'a>(&'a self, subject: &'a str) -> KeyFuture<'a, SubjectKey>;

    /// Deletes the key of `subject` and records that it is forgotten, atomically. Idempotent.
    fn forget<'a>(&'a self, subject: &'a str) -> KeyFuture<'a, ForgetOutcome>;

    /// Whether `subject` was forgotten.
    fn is_forgotten<'a>(&'a self, subject: &'a str) -> KeyFuture<'a, bool>;
}

impl<K: KeyStore + ?Sized> KeyStore for std::sync::Arc<K> {
    fn key_for_writing<'a>(
        &'a self,
        subject: &'a str,
        stream: &'a StreamId,
    ) -> KeyFuture<'a, DataKey> {
        (**self).key_for_writing(subject, stream)
    }

    fn key_for_reading<'a>(&'a self, subject: &'a str) -> KeyFuture<'a, SubjectKey> {
        (**self).key_for_reading(subject)
    }

    fn forget<'a>(&'a self, subject: &'a str) -> KeyFuture<'a, ForgetOutcome> {
        (**self).forget(subject)
    }

    fn is_forgotten<'a>(&'a self, subject: &'a str) -> KeyFuture<'a, bool> {
        (**self).is_forgotten(subject)
    }
}

/// A key store could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyStoreError {
    /// New personal data was written for a subject that was forgotten. The command is
    /// refused: a forgotten subject's data is never stored again under a new key.
    #[error(
        "subject `{subject}` was forgotten; new personal data of this subject cannot be stored"
    )]
    SubjectForgotten {
        /// The subject.
        subject: String,
    },
    /// A subject id was refused: empty, or holding a NUL character.
    #[error("invalid subject id {subject:?}: a subject id is a non-empty text without NUL")]
    InvalidSubject {
        /// The refused id.
        subject: String,
    },
    /// The master key is not the one the key store's keys were wrapped with (its key-check
    /// value does not match). Detected when the store is opened, before any key is used.
    #[error(
        "the master key is not the one this key store was set up with; supply the original master key"
    )]
    WrongMasterKey,
    /// A stored key did not unwrap with the master key: it was altered or moved to another
    /// subject's row.
    #[error("the stored key of subject `{subject}` does not unwrap with the master key")]
    CorruptKey {
        /// The subject.
        subject: String,
    },
    /// The key store's backend failed (a database error, a lost connection).
    #[error("key store failure")]
    Backend {
        /// The backend's own error.
        #[source]
        source: BoxError,
    },
}

/// Checks a subject id: non-empty, no NUL. Every key store calls it, so they refuse the
/// same ids.
pub fn check_subject(subject: &str) -> Result<(), KeyStoreError> {
    if subject.is_empty() || subject.contains('\0') {
        return Err(KeyStoreError::InvalidSubject {
            subject: subject.to_owned(),
        });
    }
    Ok(())
}
