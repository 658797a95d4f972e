//! The command loop: load, decide, append, retry on conflicts, replay idempotent repeats.

use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::Ordering;

use futures_util::StreamExt;
use tracing::Instrument;

use crate::aggregate::Aggregate;
use crate::envelope::{AppendOutcome, AppendRequest, Metadata, NewEvent, RecordedEvent};
use crate::error::{Error, Result};
use crate::event::IntoEvents;
use crate::idempotency::IdempotencyKey;
use crate::idempotency::RequestDigest;
use crate::metrics::{AggregateKeys, CacheResult};
use crate::store::EventStore;
use crate::store::FoldItem;
use crate::stream::{ExpectedVersion, StreamId, Version};

use super::{Repository, decode_stored};
use crate::event::EventSet;
use crate::personal::KeyRing;

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

/// Why a command did not complete: the command refused, or running it failed. The two
/// variants are the whole story, so a `match` needs no wildcard arm.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError<E> {
    /// The command refused: the domain error it returned. Nothing was written.
    #[error("command rejected: {0}")]
    Rejected(E),
    /// Running the command failed: the aggregate's stream id, loading it or appending its
    /// events; [`Error::Conflict`] when another writer won and the retries (if any) were
    /// used up.
    #[error(transparent)]
    Failed(#[from] Error),
}

impl<E> ExecuteError<E> {
    /// The domain error, if the command was rejected.
    pub fn rejected(&self) -> Option<&E> {
        match self {
            Self::Rejected(e) => Some(e),
            Self::Failed(_) => None,
        }
    }

    /// Whether another writer won the race.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Failed(Error::Conflict(_)))
    }
}

impl<A: Aggregate, S: EventStore> Repository<A, S> {
    /// Runs `command` on the current state of aggregate `id` and appends the events it
    /// returns, expecting the version it loaded.
    ///
    /// The returned builder sets an idempotency key, metadata and retries; `.await` it to
    /// run the command. Run from a projection's handler (a policy), the command's events are
    /// caused by the event being handled, in its correlation ([`Metadata::inherited`]).
    pub fn execute<F, R, E>(&self, id: &StreamId, command: F) -> Execute<'_, A, S, SyncCommand<F>>
    where
        F: FnMut(&A) -> std::result::Result<R, E> + Send,
        R: IntoEvents<A::Event>,
        E: Send,
    {
        self.command(id, SyncCommand(command))
    }

    /// Runs a command that awaits while it decides (it asks a service for a price, checks a
    /// uniqueness rule), with the same loop as [`execute`](Self::execute): load, decide,
    /// append expecting the loaded version, and on a conflict reload and decide again on the
    /// fresh state, so every attempt's decision is made on the state it is appended to.
    ///
    /// The command takes the [`State`] (it dereferences to the aggregate) and returns its
    /// future boxed, `Box::pin(async move { … })`; the future may use the state and what the
    /// command borrows:
    ///
    /// ```
    /// # use esrs_core::prelude::*;
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Event, Debug, Clone, PartialEq, Serialize, Deserialize)]
    /// # struct ItemAdded { item: String, price: u64 }
    /// # #[derive(Debug, Default)]
    /// # struct Cart { total: u64 }
    /// # #[aggregate(name = "cart")]
    /// # impl Cart {
    /// #     #[apply]
    /// #     fn added(&mut self, e: &ItemAdded) { self.total += e.price; }
    /// # }
    /// /// Another service: the price list.
    /// struct Prices;
    ///
    /// impl Prices {
    ///     async fn of(&self, item: &str) -> Result<u64, std::io::Error> {
    ///         Ok(item.len() as u64)
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let carts = Repository::<Cart, _>::new(InMemoryStore::new());
    /// let prices = &Prices;
    /// let id = StreamId::new("42")?;
    /// let done = carts
    ///     .execute_async(&id, |cart| {
    ///         Box::pin(async move {
    ///             let price = prices.of("book").await?; // decided on a price asked for
    ///             assert_eq!(cart.total, 0);
    ///             Ok::<_, std::io::Error>(ItemAdded { item: "book".into(), price })
    ///         })
    ///     })
    ///     .retries(3)
    ///     .await?;
    /// assert_eq!(done.state.total, 4);
    /// # Ok(()) }
    /// ```
    ///
    /// The returned future is `Send`. Dropping it while the command decides (a timeout, a
    /// cancelled request) appends nothing; dropping it while the append is in flight leaves
    /// the append committed or not, as for any write whose answer is lost: give the command
    /// an idempotency key to make its retry safe.
    pub fn execute_async<'r, F, R, E>(
        &'r self,
        id: &StreamId,
        command: F,
    ) -> Execute<'r, A, S, AsyncCommand<'r, F>>
    where
        F: for<'a> FnMut(State<'a, 'r, A>) -> BoxFuture<'a, std::result::Result<R, E>> + Send + 'r,
        R: IntoEvents<A::Event>,
        E: Send,
    {
        self.command(
            id,
            AsyncCommand {
                command,
                _borrows: PhantomData,
            },
        )
    }

    fn command<C>(&self, id: &StreamId, command: C) -> Execute<'_, A, S, C> {
        Execute {
            repository: self,
            id: id.clone(),
            command,
            key: None,
            metadata: Metadata::inherited(),
            retries: None,
        }
    }

    async fn run<C: Command<A>>(
        &self,
        id: StreamId,
        mut command: C,
        key: Option<IdempotencyKey>,
        metadata: Metadata,
        retries: u32,
    ) -> std::result::Result<Executed<A>, ExecuteError<C::Error>> {
        let stream = self.stream_of(&id)?;
        // For a command, "the same request" is the same key on the same aggregate: the
        // events are decided on the state, so they cannot identify the request.
        // Computed only for a keyed command: most commands have no key.
        let keyed = key.map(|key| (key, RequestDigest::of_command(&stream)));
        if let Some((key, digest)) = &keyed {
            if let Some(outcome) = self.find_key(key, &stream, digest).await? {
                AggregateKeys::<A>::replay();
                return self.replay_outcome(&stream, outcome).await;
            }
        }
        let mut attempt = 0;
        // After a conflict, the next attempts load from the store.
        let mut use_cache = true;
        loop {
            let cached = match &self.cache {
                Some(cache) if use_cache => {
                    let taken = cache.take(&stream);
                    AggregateKeys::<A>::cache(if taken.is_some() {
                        CacheResult::Hit
                    } else {
                        CacheResult::Miss
                    });
                    taken
                }
                _ => None,
            };
            let from_cache = cached.is_some();
            let mut loaded = match cached {
                Some(loaded) => loaded,
                None => self.load_stream(&stream).await?,
            };
            let decided = command.decide(&loaded.state).await;
            let events = match decided {
                Ok(events) => events,
                Err(rejected) => {
                    // A rejection is only as fresh as the state it was decided on: a cached
                    // state must still be the stream's latest for the rejection to stand.
                    if from_cache && self.store.stream_version(&stream).await? != loaded.version {
                        if let Some(cache) = &self.cache {
                            cache.stale.fetch_add(1, Ordering::Relaxed);
                        }
                        AggregateKeys::<A>::cache(CacheResult::Stale);
                        use_cache = false;
                        continue;
                    }
                    // The state was not touched: it is still the state at its version.
                    self.cache_put(&stream, &loaded);
                    // A keyed request refused on a state that its own first attempt may
                    // have produced (a double click whose first request committed between
                    // the key's lookup and the load): the original outcome stands.
                    if let Some((key, digest)) = &keyed {
                        if let Some(outcome) = self.find_key(key, &stream, digest).await? {
                            AggregateKeys::<A>::replay();
                            return self.replay_outcome(&stream, outcome).await;
                        }
                    }
                    return Err(ExecuteError::Rejected(rejected));
                }
            };
            let ring = match self.writing_ring(&stream, &events).await {
                Ok(ring) => ring,
                Err(error) => {
                    self.cache_put(&stream, &loaded);
                    return Err(error.into());
                }
            };
            let encode_all = || {
                events
                    .iter()
                    .map(NewEvent::encode)
                    .collect::<std::result::Result<Vec<_>, _>>()
            };
            let encoded = match match &ring {
                Some(ring) => ring.scope(&stream, encode_all),
                None => encode_all(),
            } {
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
            if let Some((key, digest)) = &keyed {
                request = request
                    .idempotency_key(key.clone())
                    .request_digest(digest.clone());
            }
            match self.append_request(request).await {
                Ok(outcome) if outcome.deduplicated => {
                    // A concurrent request with the same key won: answer with its outcome
                    // (the store checked it against this request's digest). The state is
                    // not put back in the cache: it is older than the stream.
                    if keyed.is_none() {
                        return Err(Error::Backend {
                            source: "the store answered a request without an idempotency key \
                                     with a deduplicated outcome"
                                .into(),
                        }
                        .into());
                    }
                    AggregateKeys::<A>::replay();
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
                    AggregateKeys::<A>::conflict();
                    AggregateKeys::<A>::cache(CacheResult::Stale);
                    use_cache = false;
                    tracing::debug!(%conflict, "stale cached state, reloading");
                }
                Err(Error::Conflict(conflict)) if attempt < retries => {
                    attempt += 1;
                    AggregateKeys::<A>::conflict();
                    AggregateKeys::<A>::retry();
                    use_cache = false;
                    tracing::debug!(%conflict, attempt, "conflict, reloading and retrying");
                }
                // Any other failure drops the state: an append that failed to answer may
                // still have been committed.
                Err(e) => {
                    if matches!(e, Error::Conflict(_)) {
                        AggregateKeys::<A>::conflict();
                    }
                    return Err(e.into());
                }
            }
        }
    }

    /// The keys for encoding `events` into `stream`: `None` when they hold no personal data
    /// or the repository has no key store (their encode then refuses personal fields).
    async fn writing_ring(
        &self,
        stream: &StreamId,
        events: &[A::Event],
    ) -> Result<Option<KeyRing>> {
        let Some(keys) = self.keys.as_deref() else {
            return Ok(None);
        };
        let mut subjects: Vec<String> = Vec::new();
        for event in events {
            for subject in event.subjects() {
                if !subjects.contains(&subject) {
                    subjects.push(subject);
                }
            }
        }
        if subjects.is_empty() {
            return Ok(None);
        }
        Ok(Some(KeyRing::for_writing(keys, stream, &subjects).await?))
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
            let mut read =
                self.store
                    .read_for_fold(stream, outcome.first_version, outcome.last_version, None);
            while let Some(item) = read.next().await {
                if let FoldItem::Event(event) = item? {
                    events.push(
                        decode_stored(
                            self.keys.as_deref(),
                            stream,
                            event.version,
                            &event.name,
                            event.schema_version,
                            &event.payload,
                        )
                        .await?,
                    );
                }
            }
        }
        Ok(Executed {
            outcome,
            events,
            state: loaded.state,
        })
    }
}

/// A boxed future that may borrow for `'a`: what the command of
/// [`Repository::execute_async`] returns (`Box::pin(async { … })`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a command of a [`Repository`] does: decide the events on a state, or refuse.
///
/// Implemented by the two kinds of command the repository runs, [`SyncCommand`] (from
/// [`Repository::execute`]) and [`AsyncCommand`] (from [`Repository::execute_async`]); it
/// appears in the bounds of [`Execute`], and is not meant to be implemented elsewhere.
pub trait Command<A: Aggregate>: Send {
    /// The command's domain error, returned as [`ExecuteError::Rejected`].
    type Error: Send;

    /// Decides on `state`: the events to append, or the refusal.
    fn decide<'a>(
        &'a mut self,
        state: &'a A,
    ) -> impl Future<Output = std::result::Result<Vec<A::Event>, Self::Error>> + Send;
}

/// A command that decides without awaiting: a closure `FnMut(&A) -> Result<R, E>`, as
/// [`Repository::execute`] takes it.
#[derive(Debug, Clone)]
pub struct SyncCommand<F>(F);

impl<A, F, R, E> Command<A> for SyncCommand<F>
where
    A: Aggregate,
    F: FnMut(&A) -> std::result::Result<R, E> + Send,
    R: IntoEvents<A::Event>,
    E: Send,
{
    type Error = E;

    fn decide<'a>(
        &'a mut self,
        state: &'a A,
    ) -> impl Future<Output = std::result::Result<Vec<A::Event>, E>> + Send {
        // The command's own result type is not held across an await (it need not be
        // `Send`): only its events or its rejection are.
        std::future::ready((self.0)(state).map(IntoEvents::into_events))
    }
}

/// The state an async command decides on: it dereferences to the aggregate.
///
/// A reference to the state that also records that whatever the command borrowed (`'r`,
/// the services it calls) outlives the decision (`'a`), so that the command's future may
/// use both:
///
/// ```
/// # use esrs_core::repository::State;
/// fn total(cart: State<'_, '_, Vec<u64>>) -> u64 {
///     cart.iter().sum() // a `State` of `Vec<u64>` is used as a `&Vec<u64>`
/// }
/// ```
pub struct State<'a, 'r, A>(&'a A, PhantomData<&'a &'r ()>);

impl<'a, A> State<'a, '_, A> {
    /// The state itself, for the whole decision.
    pub fn get(&self) -> &'a A {
        self.0
    }
}

impl<A> std::ops::Deref for State<'_, '_, A> {
    type Target = A;

    fn deref(&self) -> &A {
        self.0
    }
}

impl<A> Clone for State<'_, '_, A> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A> Copy for State<'_, '_, A> {}

impl<A: std::fmt::Debug> std::fmt::Debug for State<'_, '_, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A command that awaits while it decides: a closure taking the [`State`] and returning a
/// [`BoxFuture`], as [`Repository::execute_async`] takes it.
pub struct AsyncCommand<'r, F> {
    command: F,
    _borrows: PhantomData<&'r ()>,
}

impl<F> std::fmt::Debug for AsyncCommand<'_, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AsyncCommand(..)")
    }
}

impl<'r, A, F, R, E> Command<A> for AsyncCommand<'r, F>
where
    A: Aggregate,
    F: for<'s> FnMut(State<'s, 'r, A>) -> BoxFuture<'s, std::result::Result<R, E>> + Send + 'r,
    R: IntoEvents<A::Event>,
    E: Send,
{
    type Error = E;

    fn decide<'a>(
        &'a mut self,
        state: &'a A,
    ) -> impl Future<Output = std::result::Result<Vec<A::Event>, E>> + Send {
        let decided = (self.command)(State(state, PhantomData));
        async move { decided.await.map(IntoEvents::into_events) }
    }
}

/// A command about to run: set an idempotency key, metadata or retries, then `.await` it.
///
/// Made by [`Repository::execute`] and [`Repository::execute_async`].
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
    /// are kept for the store's retention ([`DEFAULT_IDEMPOTENCY_RETENTION`](crate::store::DEFAULT_IDEMPOTENCY_RETENTION)
    /// by default); a repeat after that runs as a new command.
    pub fn idempotency_key(mut self, key: impl Into<IdempotencyKey>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Metadata stored with every event the command produces.
    ///
    /// The correlation, causation and actor it leaves unset keep the command's own: a
    /// command run while a projection's handler runs (a policy) starts caused by the event
    /// being handled ([`Metadata::inherited`]), and one given
    /// [`caused_by`](Self::caused_by) by that event. Its custom fields replace those set so
    /// far.
    pub fn metadata(mut self, metadata: Metadata) -> Self {
        let Metadata {
            correlation_id,
            causation_id,
            actor,
            custom,
        } = metadata;
        self.metadata.correlation_id = correlation_id.or(self.metadata.correlation_id);
        self.metadata.causation_id = causation_id.or(self.metadata.causation_id);
        self.metadata.actor = actor.or(self.metadata.actor.take());
        self.metadata.custom = custom;
        self
    }

    /// Runs the command in reaction to `event`, as a policy or a process manager does: the
    /// events it produces are caused by `event` and belong to its correlation, by its actor
    /// ([`Metadata::caused_by`]). Replaces the metadata set so far; set more after it with
    /// [`metadata`](Self::metadata).
    ///
    /// A command run in a projection's handler is caused by the event being handled
    /// without it (see [`Metadata::inherited`]): call it for another event, or where the
    /// command runs outside the handler's task.
    pub fn caused_by(mut self, event: &RecordedEvent) -> Self {
        self.metadata = Metadata::caused_by(event);
        self
    }

    /// On a conflict, reload and run the command again, up to `retries` times.
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = Some(retries);
        self
    }
}

impl<'r, A, S, C> IntoFuture for Execute<'r, A, S, C>
where
    A: Aggregate,
    S: EventStore,
    C: Command<A> + 'r,
{
    type Output = std::result::Result<Executed<A>, ExecuteError<C::Error>>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'r>>;

    fn into_future(self) -> Self::IntoFuture {
        let retries = self.retries.unwrap_or(self.repository.retries);
        let span = tracing::debug_span!(
            "esrs.execute",
            aggregate = A::NAME,
            id = %self.id,
            idempotency_key = self.key.as_ref().map(IdempotencyKey::as_str),
            retries,
        );
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
