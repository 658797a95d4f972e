//! The repository: load, decide, append, with optimistic concurrency, retries, idempotency
//! keys and snapshots.

use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use tracing::Instrument;

use crate::aggregate::Aggregate;
use crate::envelope::{AppendOutcome, AppendRequest, Metadata, NewEvent, RecordedEvent, Snapshot};
use crate::error::{Error, Result};
use crate::event::{EventSet, IntoEvents};
use crate::store::{EventStore, StreamItem};
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

/// Why a command did not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
pub struct Repository<A, S> {
    store: S,
    retries: u32,
    _aggregate: PhantomData<fn() -> A>,
}

impl<A, S: std::fmt::Debug> std::fmt::Debug for Repository<A, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("aggregate", &std::any::type_name::<A>())
            .field("store", &self.store)
            .field("retries", &self.retries)
            .finish()
    }
}

impl<A, S: Clone> Clone for Repository<A, S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            retries: self.retries,
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
            _aggregate: PhantomData,
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

    /// The stream of aggregate `id`: `"{A::NAME}-{id}"`.
    pub fn stream_of(&self, id: &StreamId) -> StreamId {
        StreamId::in_category(A::NAME, id)
    }

    /// The current state of aggregate `id`: the latest usable snapshot plus the events
    /// after it. An aggregate with no events is `A::default()` at version 0.
    pub async fn load(&self, id: &StreamId) -> Result<Loaded<A>> {
        let stream = self.stream_of(id);
        let span = tracing::debug_span!("esrs.load", aggregate = A::NAME, stream = %stream);
        self.load_stream(&stream).instrument(span).await
    }

    async fn load_stream(&self, stream: &StreamId) -> Result<Loaded<A>> {
        if A::SNAPSHOT_EVERY.is_none() {
            return self.fold(stream, A::default(), 0, Version::MAX, None).await;
        }
        let mut items = self
            .store
            .read_stream_with_snapshot(stream, A::SNAPSHOT_KEY);
        let mut loaded = Loaded {
            state: A::default(),
            version: 0,
        };
        let mut first = true;
        while let Some(item) = items.next().await {
            match item? {
                StreamItem::Snapshot(snapshot) if first => {
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
                            return self.fold(stream, A::default(), 0, Version::MAX, None).await;
                        }
                        None => {
                            drop(items);
                            return self.fold(stream, A::default(), 0, Version::MAX, None).await;
                        }
                    }
                }
                StreamItem::Snapshot(_) => {}
                StreamItem::Event(event) => {
                    Self::apply_recorded(&mut loaded, &event)?;
                }
            }
            first = false;
        }
        Ok(loaded)
    }

    fn apply_recorded(loaded: &mut Loaded<A>, event: &RecordedEvent) -> Result<()> {
        let decoded = event.decode::<A::Event>().map_err(|source| Error::Decode {
            stream: event.stream.clone(),
            version: event.version,
            source,
        })?;
        loaded.state.apply(&decoded);
        loaded.version = event.version;
        Ok(())
    }

    async fn fold(
        &self,
        stream: &StreamId,
        state: A,
        version: Version,
        to: Version,
        until: Option<DateTime<Utc>>,
    ) -> Result<Loaded<A>> {
        let mut loaded = Loaded { state, version };
        let mut events = self.store.read_stream(stream, version + 1, to);
        while let Some(event) = events.next().await {
            let event = event?;
            if until.is_some_and(|t| event.recorded_at > t) {
                break;
            }
            Self::apply_recorded(&mut loaded, &event)?;
        }
        Ok(loaded)
    }

    /// The state of aggregate `id` as of stream version `version`: the fold of its first
    /// `version` events (fewer if the stream is shorter).
    pub async fn load_at(&self, id: &StreamId, version: Version) -> Result<Loaded<A>> {
        let stream = self.stream_of(id);
        self.fold(&stream, A::default(), 0, version, None).await
    }

    /// The state of aggregate `id` as of time `at`: the fold of the events recorded up to
    /// and including `at`.
    pub async fn load_as_of(&self, id: &StreamId, at: DateTime<Utc>) -> Result<Loaded<A>> {
        let stream = self.stream_of(id);
        self.fold(&stream, A::default(), 0, Version::MAX, Some(at))
            .await
    }

    /// Every event of aggregate `id`, decoded, with its envelope (version, metadata,
    /// recorded time): the answer to "how did we get here?".
    pub async fn history(&self, id: &StreamId) -> Result<Vec<HistoryEntry<A::Event>>> {
        let stream = self.stream_of(id);
        let mut events = self.store.read_stream(&stream, 1, Version::MAX);
        let mut history = Vec::new();
        while let Some(recorded) = events.next().await {
            let recorded = recorded?;
            let event = recorded
                .decode::<A::Event>()
                .map_err(|source| Error::Decode {
                    stream: recorded.stream.clone(),
                    version: recorded.version,
                    source,
                })?;
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
        let stream = self.stream_of(&id);
        if let Some(key) = &key {
            if let Some(original) = self.store.find_idempotency_key(key).await? {
                return self.replay_outcome(key, &stream, original).await;
            }
        }
        let mut attempt = 0;
        loop {
            let mut loaded = self.load_stream(&stream).await?;
            let events = command(&loaded.state)
                .map_err(ExecuteError::Rejected)?
                .into_events();
            let encoded = events
                .iter()
                .map(NewEvent::encode)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(Error::from)?;
            let mut request = AppendRequest::new(
                stream.clone(),
                ExpectedVersion::Exact(loaded.version),
                encoded,
            )
            .metadata(metadata.clone());
            if let Some(key) = &key {
                request = request.idempotency_key(key.clone());
            }
            match self.store.append(request).await {
                Ok(outcome) if outcome.deduplicated => {
                    // A concurrent request with the same key won: answer with its outcome.
                    return self
                        .replay_outcome(
                            key.as_ref().expect("deduplicated implies a key"),
                            &stream,
                            outcome,
                        )
                        .await;
                }
                Ok(outcome) => {
                    let before = loaded.version;
                    for event in &events {
                        loaded.state.apply(event);
                    }
                    loaded.version = outcome.last_version;
                    self.maybe_snapshot(&stream, before, &loaded).await;
                    return Ok(Executed {
                        outcome,
                        events,
                        state: loaded.state,
                    });
                }
                Err(Error::Conflict(conflict)) if attempt < retries => {
                    attempt += 1;
                    tracing::debug!(%conflict, attempt, "conflict, reloading and retrying");
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The original outcome of an idempotent request, with its events and the state right
    /// after them.
    async fn replay_outcome<E>(
        &self,
        key: &IdempotencyKey,
        stream: &StreamId,
        outcome: AppendOutcome,
    ) -> std::result::Result<Executed<A>, ExecuteError<E>> {
        if &outcome.stream != stream {
            return Err(Error::IdempotencyKeyReused {
                key: key.clone(),
                original_stream: outcome.stream,
                stream: stream.clone(),
            }
            .into());
        }
        let loaded = self
            .fold(stream, A::default(), 0, outcome.last_version, None)
            .await?;
        let mut events = Vec::new();
        if !outcome.is_empty() {
            let mut read =
                self.store
                    .read_stream(stream, outcome.first_version, outcome.last_version);
            while let Some(recorded) = read.next().await {
                let recorded = recorded?;
                events.push(
                    recorded
                        .decode::<A::Event>()
                        .map_err(|source| Error::Decode {
                            stream: recorded.stream.clone(),
                            version: recorded.version,
                            source,
                        })?,
                );
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
