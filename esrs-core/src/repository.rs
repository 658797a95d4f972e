//! The repository: load, decide, append, with optimistic concurrency, retries, idempotency
//! keys and snapshots.

use std::collections::{BTreeMap, HashMap};
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use tracing::Instrument;

use crate::aggregate::Aggregate;
use crate::envelope::{AppendOutcome, AppendRequest, Metadata, NewEvent, RecordedEvent, Snapshot};
use crate::error::{Error, Result};
use crate::event::{EventSet, IntoEvents};
use crate::idempotency::RequestDigest;
use crate::store::{EventStore, FoldEvent, FoldItem};
use crate::stream::{ExpectedVersion, IdempotencyKey, StreamId, Version};

/// The state of an aggregate and the stream version it was folded up to.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Loaded<A> {
    /// The state.
    pub state: A,
    /// The version of the last event applied; 0 for a new aggregate.
    pub version: Version,
}

impl<A> Loaded<A> {
    /// The version of the last event applied; 0 for a new aggregate. The same as the
    /// `version` field, named like [`Executed::version`] and [`HistoryEntry::version`].
    pub fn version(&self) -> Version {
        self.version
    }
}

impl<A> std::ops::Deref for Loaded<A> {
    type Target = A;
    fn deref(&self) -> &A {
        &self.state
    }
}

/// An event of an aggregate, decoded, with its stored envelope.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HistoryEntry<E> {
    /// The decoded event.
    pub event: E,
    /// The envelope: version, position, metadata, recorded time and the raw payload.
    pub recorded: RecordedEvent,
}

/// What a successful command did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Executed<A: Aggregate> {
    /// The versions and positions written. When `outcome.deduplicated` is true, the command
    /// was a repeat of an earlier one with the same idempotency key: nothing was written and
    /// this is the earlier outcome.
    pub outcome: AppendOutcome,
    /// The events the command produced (for a repeat, the events of the original).
    pub events: Vec<A::Event>,
    /// The state right after those events.
    pub state: A,
}

/// Why a command did not complete: the command refused, or the store failed. The two
/// variants are the whole story, so a `match` needs no wildcard arm.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError<E> {
    /// The command refused: the domain error it returned. Nothing was written.
    #[error("command rejected: {0}")]
    Rejected(E),
    /// Loading or appending failed; [`Error::Conflict`] when another writer won and the
    /// retries (if any) were used up.
    #[error(transparent)]
    Store(#[from] Error),
}

impl<E> ExecuteError<E> {
    /// The domain error, if the command was rejected.
    pub fn rejected(&self) -> Option<&E> {
        match self {
            Self::Rejected(e) => Some(e),
            Self::Store(_) => None,
        }
    }

    /// Whether another writer won the race.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Store(Error::Conflict(_)))
    }
}

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
    store: S,
    retries: u32,
    cache: Option<Arc<StateCache<A>>>,
    _aggregate: PhantomData<fn() -> A>,
}

impl<A, S: std::fmt::Debug> std::fmt::Debug for Repository<A, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("aggregate", &std::any::type_name::<A>())
            .field("store", &self.store)
            .field("retries", &self.retries)
            .field("cache", &self.cache.as_ref().map(|c| c.stats()))
            .finish()
    }
}

impl<A, S: Clone> Clone for Repository<A, S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            retries: self.retries,
            cache: self.cache.clone(),
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
    /// unless the command's own [`Execute::retries`] says otherwise.
    pub fn with_retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// The underlying store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The stream of aggregate `id`: `"{A::NAME}-{id}"`, or
    /// [`Error::InvalidStreamId`] when that is longer than a stream id may be.
    pub fn stream_of(&self, id: &StreamId) -> Result<StreamId> {
        Ok(StreamId::in_category(A::NAME, id)?)
    }

    /// The current state of aggregate `id`: the latest usable snapshot plus the events
    /// after it. An aggregate with no events is `A::default()` at version 0.
    pub async fn load(&self, id: &StreamId) -> Result<Loaded<A>> {
        let stream = self.stream_of(id)?;
        let span = tracing::debug_span!("esrs.load", aggregate = A::NAME, stream = %stream);
        self.load_stream(&stream).instrument(span).await
    }

    async fn load_stream(&self, stream: &StreamId) -> Result<Loaded<A>> {
        if A::SNAPSHOT_EVERY.is_none() {
            return self.fold(stream, Version::MAX).await;
        }
        let mut items = self
            .store
            .read_stream_with_snapshot_for_fold(stream, A::SNAPSHOT_KEY);
        let mut loaded = Loaded {
            state: A::default(),
            version: 0,
        };
        let mut first = true;
        while let Some(item) = items.next().await {
            match item? {
                FoldItem::Snapshot(snapshot) if first => {
                    match A::decode_snapshot(&snapshot.payload) {
                        Some(Ok(state)) => {
                            loaded = Loaded {
                                state,
                                version: snapshot.version,
                            }
                        }
                        Some(Err(error)) => {
                            tracing::warn!(
                                aggregate = A::NAME,
                                stream = %stream,
                                snapshot_version = snapshot.version,
                                %error,
                                "ignoring a snapshot that does not decode; folding the whole stream"
                            );
                            drop(items);
                            return self.fold(stream, Version::MAX).await;
                        }
                        None => {
                            drop(items);
                            return self.fold(stream, Version::MAX).await;
                        }
                    }
                }
                FoldItem::Snapshot(_) => {}
                FoldItem::Event(event) => {
                    Self::apply_fold_event(&mut loaded, stream, &event)?;
                }
            }
            first = false;
        }
        Ok(loaded)
    }

    fn apply_fold_event(
        loaded: &mut Loaded<A>,
        stream: &StreamId,
        event: &FoldEvent,
    ) -> Result<()> {
        let decoded = decoded_at(stream, event.version, event.decode::<A::Event>())?;
        loaded.state.apply(&decoded);
        loaded.version = event.version;
        Ok(())
    }

    /// The fold of the events of `stream` up to version `to`, read with only what the fold
    /// needs.
    async fn fold(&self, stream: &StreamId, to: Version) -> Result<Loaded<A>> {
        let mut loaded = Loaded {
            state: A::default(),
            version: 0,
        };
        let mut events = self.store.read_stream_for_fold(stream, 1, to);
        while let Some(event) = events.next().await {
            Self::apply_fold_event(&mut loaded, stream, &event?)?;
        }
        Ok(loaded)
    }

    /// The fold of the events of `stream` recorded up to and including `until`; needs the
    /// full envelope for the recorded time.
    async fn fold_until(&self, stream: &StreamId, until: DateTime<Utc>) -> Result<Loaded<A>> {
        let mut loaded = Loaded {
            state: A::default(),
            version: 0,
        };
        let mut events = self.store.read_stream(stream, 1, Version::MAX);
        while let Some(event) = events.next().await {
            let event = event?;
            if event.recorded_at > until {
                break;
            }
            let decoded = decoded_at(&event.stream, event.version, event.decode::<A::Event>())?;
            loaded.state.apply(&decoded);
            loaded.version = event.version;
        }
        Ok(loaded)
    }

    /// The state of aggregate `id` as of stream version `version`: the fold of its first
    /// `version` events (fewer if the stream is shorter).
    pub async fn load_at(&self, id: &StreamId, version: Version) -> Result<Loaded<A>> {
        let stream = self.stream_of(id)?;
        self.fold(&stream, version).await
    }

    /// The state of aggregate `id` as of time `at`: the fold of the events recorded up to
    /// and including `at`.
    pub async fn load_as_of(&self, id: &StreamId, at: DateTime<Utc>) -> Result<Loaded<A>> {
        let stream = self.stream_of(id)?;
        self.fold_until(&stream, at).await
    }

    /// Every event of aggregate `id`, decoded, with its envelope (version, metadata,
    /// recorded time): the answer to "how did we get here?".
    pub async fn history(&self, id: &StreamId) -> Result<Vec<HistoryEntry<A::Event>>> {
        let stream = self.stream_of(id)?;
        let mut events = self.store.read_stream(&stream, 1, Version::MAX);
        let mut history = Vec::new();
        while let Some(recorded) = events.next().await {
            let recorded = recorded?;
            let event = decoded_at(&recorded.stream, recorded.version, recorded.decode())?;
            history.push(HistoryEntry { event, recorded });
        }
        Ok(history)
    }

    /// Runs `command` on the current state of aggregate `id` and appends the events it
    /// returns, expecting the version it loaded.
    ///
    /// The returned builder sets an idempotency key, metadata and retries; `.await` it to
    /// run the command.
    pub fn execute<F, R, E>(&self, id: &StreamId, command: F) -> Execute<'_, A, S, F>
    where
        F: FnMut(&A) -> std::result::Result<R, E> + Send,
        R: IntoEvents<A::Event>,
        E: Send,
    {
        Execute {
            repository: self,
            id: id.clone(),
            command,
            key: None,
            metadata: Metadata::default(),
            retries: None,
        }
    }

    async fn run<F, R, E>(
        &self,
        id: StreamId,
        mut command: F,
        key: Option<IdempotencyKey>,
        metadata: Metadata,
        retries: u32,
    ) -> std::result::Result<Executed<A>, ExecuteError<E>>
    where
        F: FnMut(&A) -> std::result::Result<R, E> + Send,
        R: IntoEvents<A::Event>,
    {
        let stream = self.stream_of(&id)?;
        // For a command, "the same request" is the same key on the same aggregate: the
        // events are decided on the state, so they cannot identify the request.
        let digest = RequestDigest::of_command(&stream);
        if let Some(key) = &key {
            if let Some(outcome) = self.find_key(key, &stream, &digest).await? {
                return self.replay_outcome(&stream, outcome).await;
            }
        }
        let mut attempt = 0;
        // After a conflict, the next attempts load from the store.
        let mut use_cache = true;
        loop {
            let cached = match &self.cache {
                Some(cache) if use_cache => cache.take(&stream),
                _ => None,
            };
            let from_cache = cached.is_some();
            let mut loaded = match cached {
                Some(loaded) => loaded,
                None => self.load_stream(&stream).await?,
            };
            // The command's own result type is not held across an await (it need not be
            // `Send`): only its events or its rejection are.
            let decided = command(&loaded.state).map(IntoEvents::into_events);
            let events = match decided {
                Ok(events) => events,
                Err(rejected) => {
                    // A rejection is only as fresh as the state it was decided on: a cached
                    // state must still be the stream's latest for the rejection to stand.
                    if from_cache && self.store.stream_version(&stream).await? != loaded.version {
                        if let Some(cache) = &self.cache {
                            cache.stale.fetch_add(1, Ordering::Relaxed);
                        }
                        use_cache = false;
                        continue;
                    }
                    // The state was not touched: it is still the state at its version.
                    self.cache_put(&stream, &loaded);
                    // A keyed request refused on a state that its own first attempt may
                    // have produced (a double click whose first request committed between
                    // the key's lookup and the load): the original outcome stands.
                    if let Some(key) = &key {
                        if let Some(outcome) = self.find_key(key, &stream, &digest).await? {
                            return self.replay_outcome(&stream, outcome).await;
                        }
                    }
                    return Err(ExecuteError::Rejected(rejected));
                }
            };
            let encoded = match events
                .iter()
                .map(NewEvent::encode)
                .collect::<std::result::Result<Vec<_>, _>>()
            {
                Ok(encoded) => encoded,
                Err(error) => {
                    self.cache_put(&stream, &loaded);
                    return Err(Error::from(error).into());
                }
            };
            let mut request = AppendRequest::new(
                stream.clone(),
                ExpectedVersion::Exact(loaded.version),
                encoded,
            )
            .metadata(metadata.clone());
            if let Some(key) = &key {
                request = request
                    .idempotency_key(key.clone())
                    .request_digest(digest.clone());
            }
            match self.store.append(request).await {
                Ok(outcome) if outcome.deduplicated => {
                    // A concurrent request with the same key won: answer with its outcome
                    // (the store checked it against this request's digest). The state is
                    // not put back in the cache: it is older than the stream.
                    if key.is_none() {
                        return Err(Error::Store {
                            source: "the store answered a request without an idempotency key \
                                     with a deduplicated outcome"
                                .into(),
                        }
                        .into());
                    }
                    return self.replay_outcome(&stream, outcome).await;
                }
                Ok(outcome) => {
                    let before = loaded.version;
                    for event in &events {
                        loaded.state.apply(event);
                    }
                    loaded.version = outcome.last_version;
                    self.maybe_snapshot(&stream, before, &loaded).await;
                    self.cache_put(&stream, &loaded);
                    return Ok(Executed {
                        outcome,
                        events,
                        state: loaded.state,
                    });
                }
                Err(Error::Conflict(conflict)) if from_cache => {
                    // The cached state was stale: another writer appended since. The entry
                    // is already out of the cache; reload and decide again, for free.
                    if let Some(cache) = &self.cache {
                        cache.stale.fetch_add(1, Ordering::Relaxed);
                    }
                    use_cache = false;
                    tracing::debug!(%conflict, "stale cached state, reloading");
                }
                Err(Error::Conflict(conflict)) if attempt < retries => {
                    attempt += 1;
                    use_cache = false;
                    tracing::debug!(%conflict, attempt, "conflict, reloading and retrying");
                }
                // Any other failure drops the state: an append that failed to answer may
                // still have been committed.
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn cache_put(&self, stream: &StreamId, loaded: &Loaded<A>) {
        if let Some(cache) = &self.cache {
            cache.put(stream, loaded);
        }
    }

    /// The original outcome of the request made with `key`, if the store remembers one and
    /// it was this request; an error if the key was used for another request.
    async fn find_key(
        &self,
        key: &IdempotencyKey,
        stream: &StreamId,
        digest: &RequestDigest,
    ) -> Result<Option<AppendOutcome>> {
        self.store
            .find_idempotency_key(key)
            .await?
            .map(|record| record.replay(key, stream, digest))
            .transpose()
    }

    /// The original outcome of an idempotent request (already checked against this one),
    /// with its events and the state right after them.
    async fn replay_outcome<E>(
        &self,
        stream: &StreamId,
        outcome: AppendOutcome,
    ) -> std::result::Result<Executed<A>, ExecuteError<E>> {
        let loaded = self.fold(stream, outcome.last_version).await?;
        let mut events = Vec::new();
        if !outcome.is_empty() {
            let mut read = self.store.read_stream_for_fold(
                stream,
                outcome.first_version,
                outcome.last_version,
            );
            while let Some(event) = read.next().await {
                let event = event?;
                events.push(decoded_at(stream, event.version, event.decode())?);
            }
        }
        Ok(Executed {
            outcome,
            events,
            state: loaded.state,
        })
    }

    async fn maybe_snapshot(&self, stream: &StreamId, before: Version, loaded: &Loaded<A>) {
        let Some(every) = A::SNAPSHOT_EVERY.filter(|n| *n > 0) else {
            return;
        };
        if before / every == loaded.version / every {
            return;
        }
        let payload = match loaded.state.encode_snapshot() {
            Some(Ok(payload)) => payload,
            Some(Err(error)) => {
                tracing::warn!(aggregate = A::NAME, stream = %stream, %error, "cannot encode a snapshot; continuing without it");
                return;
            }
            None => return,
        };
        let snapshot = Snapshot::new(stream.clone(), loaded.version, A::SNAPSHOT_KEY, payload);
        if let Err(error) = self.store.save_snapshot(snapshot).await {
            tracing::warn!(aggregate = A::NAME, stream = %stream, %error, "cannot save a snapshot; continuing without it");
        }
    }
}

/// A command about to run: set an idempotency key, metadata or retries, then `.await` it.
///
/// Made by [`Repository::execute`].
#[must_use = "a command does nothing until it is awaited"]
pub struct Execute<'r, A, S, F> {
    repository: &'r Repository<A, S>,
    id: StreamId,
    command: F,
    key: Option<IdempotencyKey>,
    metadata: Metadata,
    retries: Option<u32>,
}

impl<A, S, F> std::fmt::Debug for Execute<'_, A, S, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Execute")
            .field("id", &self.id)
            .field("key", &self.key)
            .field("metadata", &self.metadata)
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

impl<A, S, F> Execute<'_, A, S, F> {
    /// Makes the command idempotent: if a command with this key already appended, nothing
    /// runs or is written and the original outcome is returned.
    ///
    /// "The same request" is the same key on the same aggregate: a repeat gets the original
    /// outcome (its events and the state right after them) without the command running
    /// again, also when the repeat races the original and would otherwise be refused by
    /// the state the original produced. The key used for another aggregate is refused with
    /// [`Error::IdempotencyKeyReused`], and the key of a raw
    /// [`append`](crate::EventStore::append) with [`Error::IdempotencyKeyMismatch`]. Keys
    /// are kept for the store's retention ([`DEFAULT_IDEMPOTENCY_RETENTION`](crate::DEFAULT_IDEMPOTENCY_RETENTION)
    /// by default); a repeat after that runs as a new command.
    pub fn idempotency_key(mut self, key: impl Into<IdempotencyKey>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Metadata stored with every event the command produces.
    pub fn metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// On a conflict, reload and run the command again, up to `retries` times.
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = Some(retries);
        self
    }
}

impl<'r, A, S, F, R, E> IntoFuture for Execute<'r, A, S, F>
where
    A: Aggregate,
    S: EventStore,
    F: FnMut(&A) -> std::result::Result<R, E> + Send + 'r,
    R: IntoEvents<A::Event> + 'r,
    E: Send + 'r,
{
    type Output = std::result::Result<Executed<A>, ExecuteError<E>>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'r>>;

    fn into_future(self) -> Self::IntoFuture {
        let retries = self.retries.unwrap_or(self.repository.retries);
        let span = tracing::debug_span!("esrs.execute", aggregate = A::NAME, id = %self.id);
        Box::pin(
            self.repository
                .run(self.id, self.command, self.key, self.metadata, retries)
                .instrument(span),
        )
    }
}

impl<A: Aggregate> Executed<A> {
    /// The stream's version after the command.
    pub fn version(&self) -> Version {
        self.outcome.last_version
    }
}

impl<E: EventSet> HistoryEntry<E> {
    /// The event's version in its stream.
    pub fn version(&self) -> Version {
        self.recorded.version
    }
}

/// The counters of a repository's aggregate cache, from [`Repository::cache_stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct CacheStats {
    /// The most aggregates the cache holds.
    pub capacity: usize,
    /// The aggregates it holds now.
    pub len: usize,
    /// Commands that found their aggregate in the cache and skipped the load.
    pub hits: u64,
    /// Commands that loaded their aggregate from the store.
    pub misses: u64,
    /// Cached states found stale by the store's version check, then reloaded.
    pub stale: u64,
    /// Aggregates evicted to make room for others.
    pub evictions: u64,
}

/// The bounded, least-recently-used map of aggregate states behind
/// [`Repository::with_cache`].
///
/// A command takes its aggregate's entry out while it runs and puts it back after a
/// successful append, so two commands of one process never decide on the same copy.
struct StateCache<A> {
    capacity: usize,
    clone: fn(&A) -> A,
    entries: Mutex<CacheEntries<A>>,
    hits: AtomicU64,
    misses: AtomicU64,
    stale: AtomicU64,
    evictions: AtomicU64,
}

struct CacheEntries<A> {
    by_stream: HashMap<StreamId, CacheEntry<A>>,
    /// Streams by last use, oldest first.
    by_use: BTreeMap<u64, StreamId>,
    tick: u64,
}

struct CacheEntry<A> {
    loaded: Loaded<A>,
    used: u64,
}

impl<A> StateCache<A> {
    fn new(capacity: usize, clone: fn(&A) -> A) -> Self {
        Self {
            capacity,
            clone,
            entries: Mutex::new(CacheEntries {
                by_stream: HashMap::with_capacity(capacity.min(1 << 16)),
                by_use: BTreeMap::new(),
                tick: 0,
            }),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, CacheEntries<A>> {
        // Every mutation below leaves the maps consistent before it can panic.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the entry of `stream` out of the cache.
    fn take(&self, stream: &StreamId) -> Option<Loaded<A>> {
        let taken = {
            let mut entries = self.lock();
            let entry = entries.by_stream.remove(stream);
            if let Some(entry) = &entry {
                entries.by_use.remove(&entry.used);
            }
            entry
        };
        match taken {
            Some(entry) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(entry.loaded)
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Puts a copy of `loaded` in the cache, unless it already holds a state of `stream` at
    /// the same or a later version.
    fn put(&self, stream: &StreamId, loaded: &Loaded<A>) {
        let mut entries = self.lock();
        let entries = &mut *entries;
        if let Some(existing) = entries.by_stream.get_mut(stream) {
            if existing.loaded.version >= loaded.version {
                return;
            }
            existing.loaded = Loaded {
                state: (self.clone)(&loaded.state),
                version: loaded.version,
            };
            entries.by_use.remove(&existing.used);
            entries.tick += 1;
            existing.used = entries.tick;
            entries.by_use.insert(entries.tick, stream.clone());
            return;
        }
        if entries.by_stream.len() >= self.capacity {
            if let Some((_, oldest)) = entries.by_use.pop_first() {
                entries.by_stream.remove(&oldest);
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
        entries.tick += 1;
        let used = entries.tick;
        entries.by_use.insert(used, stream.clone());
        entries.by_stream.insert(
            stream.clone(),
            CacheEntry {
                loaded: Loaded {
                    state: (self.clone)(&loaded.state),
                    version: loaded.version,
                },
                used,
            },
        );
    }

    fn clear(&self) {
        let mut entries = self.lock();
        entries.by_stream.clear();
        entries.by_use.clear();
    }

    fn stats(&self) -> CacheStats {
        CacheStats {
            capacity: self.capacity,
            len: self.lock().by_stream.len(),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            stale: self.stale.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }
}

/// A decoded event of `stream` at `version`, or the decode error naming both.
fn decoded_at<E>(
    stream: &StreamId,
    version: Version,
    decoded: std::result::Result<E, crate::DecodeError>,
) -> Result<E> {
    decoded.map_err(|source| Error::Decode {
        stream: stream.clone(),
        version,
        source,
    })
}
