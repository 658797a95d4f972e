//! [`PgKeyStore`]: the data keys of personal data, wrapped by a master key, in the store's
//! schema.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use esrs_core::StreamId;
use esrs_core::personal::{
    DataKey, ForgetOutcome, KeyFuture, KeyStore, KeyStoreError, MasterKey, SubjectKey,
    check_subject,
};
use sqlx::postgres::PgPool;

use crate::store::PgStore;

/// How long [`PgKeyStore`] keeps an unwrapped key by default: 30 seconds.
pub const DEFAULT_KEY_CACHE_TTL: Duration = Duration::from_secs(30);

/// A [`KeyStore`] in PostgreSQL, in the tables of the [`PgStore`]'s schema (migration 6):
///
/// - `personal_keys(subject, wrapped_key, created_at)`: one data key per subject, wrapped
///   by the application's [`MasterKey`] (XChaCha20-Poly1305, bound to the subject), so a
///   dump of the database alone reveals no key;
/// - `forgotten_subjects(subject, forgotten_at)`: the subjects forgotten, which a trigger
///   keeps for good, so a key restored from an old backup is never used again;
/// - `personal_streams(subject, stream_id)`: where each subject's data was written, whose
///   snapshots [`esrs_core::personal::forget`] deletes;
/// - `personal_master_key`: the master key's check value, so that
///   [`open`](Self::open) with another master key fails with
///   [`KeyStoreError::WrongMasterKey`] before any key is used.
///
/// A forget deletes the key row and writes the tombstone in one transaction, under a
/// per-subject advisory lock that key creation takes too, so no key can be created for a
/// subject being forgotten.
///
/// # The key cache
///
/// Unwrapped keys are cached in process for [`with_cache_ttl`](Self::with_cache_ttl)
/// ([`DEFAULT_KEY_CACHE_TTL`], 30 s). A forget in this process evicts the key at once; a
/// forget in another process takes effect here within the TTL: until then this process can
/// still decrypt the subject's fields, and new data it writes for the subject is sealed
/// with the deleted key (so unreadable from the start). A TTL of zero turns the cache off
/// (one query per subject per command or load). Forgotten subjects are cached for good.
/// Clones share the cache.
#[derive(Clone)]
pub struct PgKeyStore {
    pool: PgPool,
    schema: Arc<str>,
    master: Arc<MasterKey>,
    ttl: Duration,
    cache: Arc<Mutex<Cache>>,
}

#[derive(Default)]
struct Cache {
    keys: HashMap<String, (DataKey, Instant)>,
    forgotten: HashSet<String>,
    /// (subject, stream) pairs this process has recorded in `personal_streams`.
    recorded: HashSet<(String, String)>,
}

impl std::fmt::Debug for PgKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgKeyStore")
            .field("schema", &self.schema)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

fn backend(error: sqlx::Error) -> KeyStoreError {
    KeyStoreError::Backend {
        source: Box::new(error),
    }
}

impl PgKeyStore {
    /// Opens the key store of `store`'s schema (run [`PgStore::migrate`] first) with the
    /// application's master key. The first open records the master key's check value; every
    /// later open with another master key fails with [`KeyStoreError::WrongMasterKey`].
    pub async fn open(store: &PgStore, master: MasterKey) -> Result<Self, KeyStoreError> {
        let schema = store.schema();
        let pool = store.pool().clone();
        sqlx::query(&format!(
            "INSERT INTO {schema}.personal_master_key (id, check_value) VALUES (true, $1)
             ON CONFLICT (id) DO NOTHING"
        ))
        .bind(master.check_value())
        .execute(&pool)
        .await
        .map_err(backend)?;
        let check: Vec<u8> = sqlx::query_scalar(&format!(
            "SELECT check_value FROM {schema}.personal_master_key"
        ))
        .fetch_one(&pool)
        .await
        .map_err(backend)?;
        if !master.check(&check) {
            return Err(KeyStoreError::WrongMasterKey);
        }
        Ok(Self {
            pool,
            schema: schema.into(),
            master: Arc::new(master),
            ttl: DEFAULT_KEY_CACHE_TTL,
            cache: Arc::new(Mutex::new(Cache::default())),
        })
    }

    /// Keeps unwrapped keys in process for `ttl`: the bound on how long a forget in another
    /// process takes to take effect here (see [the key cache](PgKeyStore#the-key-cache)).
    pub fn with_cache_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    fn cache(&self) -> MutexGuard<'_, Cache> {
        // Every update of the cache is one insert or remove: a panic cannot leave it torn.
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn cached_key(&self, subject: &str) -> Option<DataKey> {
        let cache = self.cache();
        cache
            .keys
            .get(subject)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(key, _)| key.clone())
    }

    fn remember(&self, subject: &str, key: &DataKey) {
        if !self.ttl.is_zero() {
            self.cache()
                .keys
                .insert(subject.to_owned(), (key.clone(), Instant::now()));
        }
    }

    fn remember_forgotten(&self, subject: &str) {
        let mut cache = self.cache();
        cache.keys.remove(subject);
        cache.forgotten.insert(subject.to_owned());
    }

    fn unwrap_key(&self, subject: &str, wrapped: &[u8]) -> Result<DataKey, KeyStoreError> {
        self.master
            .unwrap_key(subject, wrapped)
            .ok_or_else(|| KeyStoreError::CorruptKey {
                subject: subject.to_owned(),
            })
    }

    async fn write_key(&self, subject: &str, stream: &StreamId) -> Result<DataKey, KeyStoreError> {
        let schema = &self.schema;
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('esrs personal ' || $1, 0))")
            .bind(format!("{schema}.{subject}"))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let forgotten: bool = sqlx::query_scalar(&format!(
            "SELECT EXISTS (SELECT 1 FROM {schema}.forgotten_subjects WHERE subject = $1)"
        ))
        .bind(subject)
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        if forgotten {
            // Ended now, so that the subject's lock goes before the refusal is returned. A
            // rollback that fails leaves the connection to the pool, which closes it; the
            // refusal stands either way.
            let _ = tx.rollback().await;
            self.remember_forgotten(subject);
            return Err(KeyStoreError::SubjectForgotten {
                subject: subject.to_owned(),
            });
        }
        sqlx::query(&format!(
            "INSERT INTO {schema}.personal_streams (subject, stream_id) VALUES ($1, $2)
             ON CONFLICT DO NOTHING"
        ))
        .bind(subject)
        .bind(stream.as_str())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let wrapped: Option<Vec<u8>> = sqlx::query_scalar(&format!(
            "SELECT wrapped_key FROM {schema}.personal_keys WHERE subject = $1"
        ))
        .bind(subject)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        let key = match wrapped {
            Some(wrapped) => self.unwrap_key(subject, &wrapped)?,
            None => {
                let key = DataKey::generate();
                sqlx::query(&format!(
                    "INSERT INTO {schema}.personal_keys (subject, wrapped_key) VALUES ($1, $2)"
                ))
                .bind(subject)
                .bind(self.master.wrap(subject, &key))
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
                key
            }
        };
        tx.commit().await.map_err(backend)?;
        self.remember(subject, &key);
        self.cache()
            .recorded
            .insert((subject.to_owned(), stream.as_str().to_owned()));
        Ok(key)
    }

    async fn read_key(&self, subject: &str) -> Result<SubjectKey, KeyStoreError> {
        let schema = &self.schema;
        let (forgotten, wrapped): (bool, Option<Vec<u8>>) = sqlx::query_as(&format!(
            "SELECT EXISTS (SELECT 1 FROM {schema}.forgotten_subjects WHERE subject = $1),
                    (SELECT wrapped_key FROM {schema}.personal_keys WHERE subject = $1)"
        ))
        .bind(subject)
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        if forgotten {
            self.remember_forgotten(subject);
            return Ok(SubjectKey::Forgotten);
        }
        match wrapped {
            Some(wrapped) => {
                let key = self.unwrap_key(subject, &wrapped)?;
                self.remember(subject, &key);
                Ok(SubjectKey::Key(key))
            }
            None => Ok(SubjectKey::Unknown),
        }
    }

    async fn forget_subject(&self, subject: &str) -> Result<ForgetOutcome, KeyStoreError> {
        let schema = &self.schema;
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('esrs personal ' || $1, 0))")
            .bind(format!("{schema}.{subject}"))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query(&format!(
            "DELETE FROM {schema}.personal_keys WHERE subject = $1"
        ))
        .bind(subject)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let inserted = sqlx::query(&format!(
            "INSERT INTO {schema}.forgotten_subjects (subject) VALUES ($1) ON CONFLICT DO NOTHING"
        ))
        .bind(subject)
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected();
        let streams: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT stream_id FROM {schema}.personal_streams WHERE subject = $1 ORDER BY stream_id"
        ))
        .bind(subject)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        self.remember_forgotten(subject);
        Ok(ForgetOutcome::new(
            streams.into_iter().map(StreamId::from_stored).collect(),
            inserted == 0,
        ))
    }
}

impl KeyStore for PgKeyStore {
    fn key_for_writing<'a>(
        &'a self,
        subject: &'a str,
        stream: &'a StreamId,
    ) -> KeyFuture<'a, DataKey> {
        Box::pin(async move {
            check_subject(subject)?;
            {
                let cache = self.cache();
                if cache.forgotten.contains(subject) {
                    return Err(KeyStoreError::SubjectForgotten {
                        subject: subject.to_owned(),
                    });
                }
                let recorded = cache
                    .recorded
                    .contains(&(subject.to_owned(), stream.as_str().to_owned()));
                drop(cache);
                if recorded {
                    if let Some(key) = self.cached_key(subject) {
                        return Ok(key);
                    }
                }
            }
            self.write_key(subject, stream).await
        })
    }

    fn key_for_reading<'a>(&'a self, subject: &'a str) -> KeyFuture<'a, SubjectKey> {
        Box::pin(async move {
            check_subject(subject)?;
            if self.cache().forgotten.contains(subject) {
                return Ok(SubjectKey::Forgotten);
            }
            if let Some(key) = self.cached_key(subject) {
                return Ok(SubjectKey::Key(key));
            }
            self.read_key(subject).await
        })
    }

    fn forget<'a>(&'a self, subject: &'a str) -> KeyFuture<'a, ForgetOutcome> {
        Box::pin(async move {
            check_subject(subject)?;
            self.forget_subject(subject).await
        })
    }

    fn is_forgotten<'a>(&'a self, subject: &'a str) -> KeyFuture<'a, bool> {
        Box::pin(async move {
            check_subject(subject)?;
            if self.cache().forgotten.contains(subject) {
                return Ok(true);
            }
            let schema = &self.schema;
            let forgotten: bool = sqlx::query_scalar(&format!(
                "SELECT EXISTS (SELECT 1 FROM {schema}.forgotten_subjects WHERE subject = $1)"
            ))
            .bind(subject)
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
            if forgotten {
                self.remember_forgotten(subject);
            }
            Ok(forgotten)
        })
    }
}
