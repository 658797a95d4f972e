//! [`InMemoryKeyStore`]: the key store of tests and single-process programs.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::stream::StreamId;

use super::cipher::DataKey;
use super::keystore::{ForgetOutcome, KeyFuture, KeyStore, SubjectKey, check_subject};

/// A key store in process memory: keys are lost when the process ends, so it suits tests,
/// examples and programs whose events live in an [`InMemoryStore`](crate::InMemoryStore).
/// Clones share the keys.
#[derive(Debug, Clone, Default)]
pub struct InMemoryKeyStore {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    keys: HashMap<String, DataKey>,
    forgotten: HashSet<String>,
    streams: HashMap<String, Vec<StreamId>>,
}

impl InMemoryKeyStore {
    /// An empty key store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while the lock was held cannot leave the maps half-updated: every update
        // is one insert or remove.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The number of keys held (forgotten subjects hold none).
    pub fn key_count(&self) -> usize {
        self.lock().keys.len()
    }
}

impl KeyStore for InMemoryKeyStore {
    fn key_for_writing<'a>(
        &'a self,
        subject: &'a str,
        stream: &'a StreamId,
    ) -> KeyFuture<'a, DataKey> {
        Box::pin(async move {
            check_subject(subject)?;
            let mut state = self.lock();
            if state.forgotten.contains(subject) {
                return Err(super::KeyStoreError::SubjectForgotten {
                    subject: subject.to_owned(),
                });
            }
            let streams = state.streams.entry(subject.to_owned()).or_default();
            if !streams.contains(stream) {
                streams.push(stream.clone());
            }
            Ok(state
                .keys
                .entry(subject.to_owned())
                .or_insert_with(DataKey::generate)
                .clone())
        })
    }

    fn key_for_reading<'a>(&'a self, subject: &'a str) -> KeyFuture<'a, SubjectKey> {
        Box::pin(async move {
            check_subject(subject)?;
            let state = self.lock();
            Ok(if state.forgotten.contains(subject) {
                SubjectKey::Forgotten
            } else {
                match state.keys.get(subject) {
                    Some(key) => SubjectKey::Key(key.clone()),
                    None => SubjectKey::Unknown,
                }
            })
        })
    }

    fn forget<'a>(&'a self, subject: &'a str) -> KeyFuture<'a, ForgetOutcome> {
        Box::pin(async move {
            check_subject(subject)?;
            let mut state = self.lock();
            state.keys.remove(subject);
            let already = !state.forgotten.insert(subject.to_owned());
            let streams = state.streams.get(subject).cloned().unwrap_or_default();
            Ok(ForgetOutcome::new(streams, already))
        })
    }

    fn is_forgotten<'a>(&'a self, subject: &'a str) -> KeyFuture<'a, bool> {
        Box::pin(async move {
            check_subject(subject)?;
            Ok(self.lock().forgotten.contains(subject))
        })
    }
}
