//! The [`Repository`] type: its store, its retries and its cache.

use std::marker::PhantomData;
use std::sync::Arc;

use crate::aggregate::Aggregate;
use crate::error::Result;
use crate::personal::KeyStore;
use crate::store::EventStore;
use crate::stream::StreamId;

use super::cache::{CacheStats, StateCache};
use super::execute::BoxFuture;
use super::snapshot_policy::Snapshots;
use crate::envelope::{AppendOutcome, AppendRequest};

/// Loads aggregates of type `A` from a store and runs commands on them.
///
/// ```
/// # use esrs_core::*;
/// # async fn demo<A: Aggregate>(store: InMemoryStore) -> Result<()> {
/// let repo = Repository::<A, _>::new(store).with_retries(3);
/// let id = StreamId::new("42").unwrap();
/// let loaded = repo.load(&id).await?;
/// println!("version {}", loaded.version);
/// # Ok(()) }
/// ```
///
/// # The aggregate cache
///
/// [`Repository::with_cache`] keeps the state and version of recently used aggregates in
/// process, so that a command on a cached aggregate skips the load round trip: it decides on
/// the cached state and appends expecting the cached version. The store still checks that
/// version atomically, so correctness never depends on the cache being fresh: when another
/// process (or another repository) has written in the meantime, the append is refused with a
/// conflict, the entry is dropped, and the command runs again on a state loaded from the
/// store. That stale-cache retry is free: it does not count against
/// [`with_retries`](Repository::with_retries). A command that rejects a cached state is
/// checked the same way before the rejection is returned: if the stream has moved on
/// (one cheap version query), the command runs again on the reloaded state.
///
/// The cache is opt-in because it keeps up to `capacity` states in memory and clones the
/// state once per command (the command's result carries the state by value and the cache
/// keeps its own copy), which is why it needs `A: Clone`. It is bounded: the least recently
/// used aggregate is evicted when it is full. Clones of a repository share its cache.
///
/// A cached state is the fold of the events as the commands returned them, not as they were
/// decoded after a round trip through the store; the two agree whenever the events'
/// encoding round-trips, which is what event sourcing assumes anyway.
pub struct Repository<A, S> {
    pub(super) store: S,
    pub(super) retries: u32,
    pub(super) cache: Option<Arc<StateCache<A>>>,
    pub(super) keys: Option<Arc<dyn KeyStore>>,
    pub(super) snapshots: Snapshots<A>,
    pub(super) appender: Option<Arc<dyn Appender<S>>>,
    _aggregate: PhantomData<fn() -> A>,
}

impl<A, S: std::fmt::Debug> std::fmt::Debug for Repository<A, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("aggregate", &std::any::type_name::<A>())
            .field("store", &self.store)
            .field("retries", &self.retries)
            .field("cache", &self.cache.as_ref().map(|c| c.stats()))
            .field("key_store", &self.keys.is_some())
            .field("snapshot_policy", &self.snapshots.policy)
            .field("appender", &self.appender.is_some())
            .finish()
    }
}

impl<A, S: Clone> Clone for Repository<A, S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            retries: self.retries,
            cache: self.cache.clone(),
            keys: self.keys.clone(),
            snapshots: self.snapshots.clone(),
            appender: self.appender.clone(),
            _aggregate: PhantomData,
        }
    }
}

impl<A: Aggregate, S: EventStore> Repository<A, S> {
    /// A repository over `store` that reports conflicts without retrying.
    pub fn new(store: S) -> Self {
        Self {
            store,
            retries: 0,
            cache: None,
            keys: None,
            snapshots: Snapshots::default(),
            appender: None,
            _aggregate: PhantomData,
        }
    }

    /// Keeps the state and version of up to `capacity` aggregates in process, so that a
    /// command on a cached aggregate skips the load round trip; `0` turns the cache off.
    ///
    /// See [the aggregate cache](Repository#the-aggregate-cache) for how it stays correct
    /// with several writers. Replaces any cache the repository had.
    pub fn with_cache(mut self, capacity: usize) -> Self
    where
        A: Clone,
    {
        self.cache = (capacity > 0).then(|| Arc::new(StateCache::new(capacity, A::clone)));
        self
    }

    /// Encrypts the aggregate's personal fields (`#[event(personal)]`) with the keys of
    /// `keys` when appending, and decrypts them when loading; a forgotten subject's fields
    /// load as [`Personal::Forgotten`](crate::personal::Personal::Forgotten). Without a key store, a
    /// command producing personal data fails with
    /// [`EncodeError::Personal`](crate::error::EncodeError::Personal), and a load of such
    /// events with [`DecodeError::PersonalData`](crate::DecodeError::PersonalData). See
    /// [`personal`](crate::personal).
    pub fn with_key_store(mut self, keys: impl KeyStore) -> Self {
        self.keys = Some(Arc::new(keys));
        self
    }

    /// The key store of personal data, if any.
    pub fn key_store(&self) -> Option<&dyn KeyStore> {
        self.keys.as_deref()
    }

    /// The counters of the aggregate cache; `None` when the repository has none.
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.cache.as_ref().map(|c| c.stats())
    }

    /// Empties the aggregate cache (the counters are kept). The next command on each
    /// aggregate loads it from the store.
    pub fn clear_cache(&self) {
        if let Some(cache) = &self.cache {
            cache.clear();
        }
    }

    /// Retries a command up to `retries` times on a conflict (reload, decide again, append)
    /// unless the command's own [`Execute::retries`](crate::repository::Execute::retries) says otherwise.
    pub fn with_retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Appends the events of every command through `appender` instead of
    /// [`EventStore::append`]: a store's way of doing more in the append's transaction, such
    /// as the PostgreSQL store's inline read models (`esrs_postgres::InlineReadModel`),
    /// updated in the transaction that appends, while deciding, retries, idempotency keys
    /// and snapshots work as before.
    pub fn with_appender(mut self, appender: impl Appender<S>) -> Self {
        self.appender = Some(Arc::new(appender));
        self
    }

    /// Appends `request` as the repository's commands do: through its
    /// [`Appender`], if it has one.
    pub(super) async fn append_request(&self, request: AppendRequest) -> Result<AppendOutcome> {
        match &self.appender {
            Some(appender) => appender.append(&self.store, request).await,
            None => self.store.append(request).await,
        }
    }

    /// The underlying store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The stream of aggregate `id`: `"{A::NAME}-{id}"`, or
    /// [`Error::InvalidStreamId`](crate::Error::InvalidStreamId) when that is longer than a stream id may be.
    pub fn stream_of(&self, id: &StreamId) -> Result<StreamId> {
        Ok(StreamId::in_category(A::NAME, id)?)
    }
}

/// How a [`Repository`] writes the events of a command, given with
/// [`Repository::with_appender`]: by default [`EventStore::append`]. An appender must keep
/// the append's contract: check the expected version and the idempotency key atomically,
/// return [`Error::Conflict`](crate::Error::Conflict) on a stale version (so that commands
/// retry), and the original outcome for a repeated key.
pub trait Appender<S>: Send + Sync + 'static {
    /// Appends `request` to `store`.
    fn append<'a>(
        &'a self,
        store: &'a S,
        request: AppendRequest,
    ) -> BoxFuture<'a, Result<AppendOutcome>>;
}
