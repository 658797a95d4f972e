//! The repository's aggregate cache: hits skip the load, stale entries are caught by the
//! store's version check, and several repositories with their own caches over one store
//! (as several processes would be) never lose an update.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use esrs_core::error::EncodeError;
use esrs_core::store::{AppendOutcome, AppendRequest, EventStream, Payload, SnapshotKey};
use esrs_core::{
    Aggregate, DecodeError, EventSet, EventStore, IdempotencyKey, InMemoryStore, Position,
    Repository, Result, StreamId, Version,
};
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Added {
    n: u64,
}

#[derive(Debug, Clone, PartialEq)]
enum TallyEvent {
    Added(Added),
}

impl EventSet for TallyEvent {
    const NAMES: &'static [&'static str] = &["Added"];
    fn name(&self) -> &'static str {
        "Added"
    }
    fn schema_version(&self) -> u32 {
        1
    }
    fn encode(&self) -> Result<Payload, EncodeError> {
        let TallyEvent::Added(e) = self;
        esrs_core::store::encode_json("Added", e)
    }
    fn decode(name: &str, version: u32, payload: &str) -> Result<Self, DecodeError> {
        match (name, version) {
            ("Added", 1) => Ok(TallyEvent::Added(DecodeError::parse("Added", 1, payload)?)),
            ("Added", v) => Err(DecodeError::UnknownVersion {
                name: "Added",
                version: v,
                known: vec![1],
            }),
            _ => Err(DecodeError::UnknownName {
                name: name.to_owned(),
                known: Self::NAMES.to_vec(),
            }),
        }
    }
}

/// Every number added, in order.
#[derive(Debug, Clone, Default, PartialEq)]
struct Tally {
    added: Vec<u64>,
}

impl Aggregate for Tally {
    const NAME: &'static str = "tally";
    type Event = TallyEvent;
    fn apply(&mut self, event: &TallyEvent) {
        let TallyEvent::Added(e) = event;
        self.added.push(e.n);
    }
}

#[derive(Debug, PartialEq)]
struct TooBig;

fn add(n: u64) -> impl FnMut(&Tally) -> Result<TallyEvent, TooBig> + Send {
    move |_| Ok(TallyEvent::Added(Added { n }))
}

/// An in-memory store that counts the reads of a stream.
#[derive(Debug, Clone, Default)]
struct CountingStore {
    inner: InMemoryStore,
    stream_reads: Arc<AtomicU64>,
}

impl CountingStore {
    fn stream_reads(&self) -> u64 {
        self.stream_reads.load(Ordering::SeqCst)
    }
}

impl EventStore for CountingStore {
    fn append(&self, request: AppendRequest) -> impl Future<Output = Result<AppendOutcome>> + Send {
        self.inner.append(request)
    }
    fn read_stream(&self, stream: &StreamId, from: Version, to: Version) -> EventStream<'_> {
        self.stream_reads.fetch_add(1, Ordering::SeqCst);
        self.inner.read_stream(stream, from, to)
    }
    fn read_all(&self, after: Position) -> EventStream<'_> {
        self.inner.read_all(after)
    }
    fn read_for_fold(
        &self,
        stream: &StreamId,
        from: Version,
        to: Version,
        snapshot: Option<esrs_core::store::SnapshotKey>,
    ) -> esrs_core::store::FoldStream<'_> {
        self.stream_reads.fetch_add(1, Ordering::SeqCst);
        self.inner.read_for_fold(stream, from, to, snapshot)
    }
    fn save_snapshot(
        &self,
        snapshot: esrs_core::store::Snapshot,
    ) -> impl Future<Output = Result<()>> + Send {
        self.inner.save_snapshot(snapshot)
    }
    fn load_snapshot(
        &self,
        stream: &StreamId,
        key: SnapshotKey,
    ) -> impl Future<Output = Result<Option<esrs_core::store::Snapshot>>> + Send {
        self.inner.load_snapshot(stream, key)
    }
    fn find_idempotency_key(
        &self,
        key: &IdempotencyKey,
    ) -> impl Future<Output = Result<Option<esrs_core::store::IdempotencyRecord>>> + Send {
        self.inner.find_idempotency_key(key)
    }
    fn stream_version(&self, stream: &StreamId) -> impl Future<Output = Result<Version>> + Send {
        self.inner.stream_version(stream)
    }
    fn wait_for_events(
        &self,
        after: Position,
        timeout: Duration,
    ) -> impl Future<Output = Result<()>> + Send {
        self.inner.wait_for_events(after, timeout)
    }
}

fn id(s: &str) -> StreamId {
    StreamId::new(s).unwrap()
}

async fn stored_numbers<S: EventStore>(store: &S, id: &StreamId) -> Vec<(Version, u64)> {
    let stream = StreamId::in_category(Tally::NAME, id).unwrap();
    let events: Vec<_> = store
        .read_stream(&stream, 1, Version::MAX)
        .try_collect()
        .await
        .unwrap();
    events
        .iter()
        .map(|e| {
            let TallyEvent::Added(a) = e.decode::<TallyEvent>().unwrap();
            (e.version, a.n)
        })
        .collect()
}

#[tokio::test]
async fn a_hit_skips_the_load() {
    let store = CountingStore::default();
    let repo = Repository::<Tally, _>::new(store.clone()).with_cache(10);
    let a = id("a");

    repo.execute(&a, add(1)).await.unwrap();
    assert_eq!(store.stream_reads(), 1, "the first command loads");
    for n in 2..=4 {
        let done = repo.execute(&a, add(n)).await.unwrap();
        assert_eq!(done.version(), n);
        assert_eq!(done.state.added, (1..=n).collect::<Vec<_>>());
    }
    assert_eq!(
        store.stream_reads(),
        1,
        "cached commands do not read the stream"
    );
    let stats = repo.cache_stats().unwrap();
    assert_eq!((stats.hits, stats.misses, stats.len), (3, 1, 1));
    assert_eq!(
        repo.load(&a).await.unwrap().state.added,
        vec![1, 2, 3, 4],
        "the stored history is the cached one"
    );
}

#[tokio::test]
async fn without_a_cache_every_command_loads() {
    let store = CountingStore::default();
    let repo = Repository::<Tally, _>::new(store.clone());
    let a = id("a");
    for n in 1..=3 {
        repo.execute(&a, add(n)).await.unwrap();
    }
    assert_eq!(store.stream_reads(), 3);
    assert!(repo.cache_stats().is_none());
    let off = Repository::<Tally, _>::new(store.clone()).with_cache(0);
    assert!(
        off.cache_stats().is_none(),
        "capacity 0 turns the cache off"
    );
}

#[tokio::test]
async fn a_stale_entry_is_caught_by_the_version_check_and_reloaded() {
    // Two repositories with their own caches over one store: two processes.
    let store = CountingStore::default();
    let first = Repository::<Tally, _>::new(store.clone()).with_cache(10);
    let second = Repository::<Tally, _>::new(store.clone()).with_cache(10);
    let a = id("a");

    first.execute(&a, add(1)).await.unwrap(); // first caches version 1
    second.execute(&a, add(2)).await.unwrap(); // second loads version 1, writes 2
    // first's entry (version 1) is stale; no retries were asked for, yet the command
    // succeeds on the reloaded state, because a stale cache is not a real conflict.
    let done = first.execute(&a, add(3)).await.unwrap();
    assert_eq!(done.version(), 3);
    assert_eq!(done.state.added, vec![1, 2, 3]);
    let stats = first.cache_stats().unwrap();
    assert_eq!((stats.hits, stats.misses, stats.stale), (1, 1, 1));

    // And the refreshed entry is a hit again.
    let reads = store.stream_reads();
    first.execute(&a, add(4)).await.unwrap();
    assert_eq!(store.stream_reads(), reads);
    assert_eq!(
        stored_numbers(&store, &a).await,
        vec![(1, 1), (2, 2), (3, 3), (4, 4)]
    );
}

#[tokio::test]
async fn a_rejected_command_keeps_the_entry() {
    let store = CountingStore::default();
    let repo = Repository::<Tally, _>::new(store.clone()).with_cache(10);
    let a = id("a");
    repo.execute(&a, add(1)).await.unwrap();
    let err = repo
        .execute(&a, |_: &Tally| Err::<TallyEvent, _>(TooBig))
        .await
        .unwrap_err();
    assert_eq!(err.rejected(), Some(&TooBig));
    repo.execute(&a, add(2)).await.unwrap();
    assert_eq!(store.stream_reads(), 1);
    assert_eq!(repo.cache_stats().unwrap().hits, 2);
}

#[tokio::test]
async fn the_cache_is_bounded_and_evicts_the_least_recently_used() {
    let store = CountingStore::default();
    let repo = Repository::<Tally, _>::new(store.clone()).with_cache(2);
    let (a, b, c) = (id("a"), id("b"), id("c"));
    repo.execute(&a, add(1)).await.unwrap();
    repo.execute(&b, add(1)).await.unwrap();
    repo.execute(&a, add(2)).await.unwrap(); // a is now more recent than b
    repo.execute(&c, add(1)).await.unwrap(); // evicts b
    let stats = repo.cache_stats().unwrap();
    assert_eq!((stats.len, stats.evictions), (2, 1));

    let reads = store.stream_reads();
    repo.execute(&a, add(3)).await.unwrap();
    assert_eq!(store.stream_reads(), reads, "a stayed cached");
    let done = repo.execute(&b, add(2)).await.unwrap();
    assert_eq!(
        store.stream_reads(),
        reads + 1,
        "b was evicted and is reloaded"
    );
    assert_eq!(done.state.added, vec![1, 2]);
    assert!(repo.cache_stats().unwrap().len <= 2);
}

#[tokio::test]
async fn clear_cache_forces_a_reload() {
    let store = CountingStore::default();
    let repo = Repository::<Tally, _>::new(store.clone()).with_cache(10);
    let a = id("a");
    repo.execute(&a, add(1)).await.unwrap();
    repo.clear_cache();
    assert_eq!(repo.cache_stats().unwrap().len, 0);
    repo.execute(&a, add(2)).await.unwrap();
    assert_eq!(store.stream_reads(), 2);
}

#[tokio::test]
async fn idempotency_keys_still_deduplicate_with_a_cache() {
    let store = CountingStore::default();
    let first = Repository::<Tally, _>::new(store.clone()).with_cache(10);
    let second = Repository::<Tally, _>::new(store.clone()).with_cache(10);
    let a = id("a");
    first.execute(&a, add(1)).await.unwrap();
    let original = first
        .execute(&a, add(2))
        .idempotency_key(IdempotencyKey::new("req-2").unwrap())
        .await
        .unwrap();
    let repeat = second
        .execute(&a, add(2))
        .idempotency_key(IdempotencyKey::new("req-2").unwrap())
        .await
        .unwrap();
    assert!(repeat.outcome.deduplicated);
    assert_eq!(repeat.outcome.last_version, original.outcome.last_version);
    assert_eq!(repeat.state.added, vec![1, 2]);
    first.execute(&a, add(3)).await.unwrap();
    assert_eq!(
        stored_numbers(&store, &a).await,
        vec![(1, 1), (2, 2), (3, 3)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_with_separate_caches_lose_no_update() {
    const WRITERS: u64 = 6;
    const COMMANDS: u64 = 60;
    const STREAMS: u64 = 3;
    let store = InMemoryStore::new();
    // Writers 0, 2, 4 share one cache ("process" one), 1, 3, 5 another ("process" two).
    let repos = [
        Repository::<Tally, _>::new(store.clone())
            .with_cache(STREAMS as usize)
            .with_retries(1_000),
        Repository::<Tally, _>::new(store.clone())
            .with_cache(STREAMS as usize)
            .with_retries(1_000),
    ];
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let repo = repos[(writer % 2) as usize].clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..COMMANDS {
                let n = writer * 1_000 + i;
                let stream = id(&format!("s{}", (writer + i) % STREAMS));
                let done = repo.execute(&stream, add(n)).await.unwrap();
                assert_eq!(done.state.added.last(), Some(&n));
                acked.push((stream, n));
                tokio::task::yield_now().await;
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for task in tasks {
        acked.extend(task.await.unwrap());
    }
    assert_eq!(acked.len() as u64, WRITERS * COMMANDS);

    let mut total = 0;
    for s in 0..STREAMS {
        let stream = id(&format!("s{s}"));
        let stored = stored_numbers(&store, &stream).await;
        let versions: Vec<_> = stored.iter().map(|(v, _)| *v).collect();
        assert_eq!(versions, (1..=stored.len() as u64).collect::<Vec<_>>());
        let mut numbers: Vec<_> = stored.iter().map(|(_, n)| *n).collect();
        let mut expected: Vec<_> = acked
            .iter()
            .filter(|(st, _)| *st == stream)
            .map(|(_, n)| *n)
            .collect();
        numbers.sort_unstable();
        expected.sort_unstable();
        assert_eq!(numbers, expected, "every acked command, once, in {stream}");
        total += stored.len();
        // Each cache's view, refreshed by a command, agrees with the store.
        for repo in &repos {
            let loaded = repo.load(&stream).await.unwrap();
            assert_eq!(
                loaded.state.added,
                stored.iter().map(|(_, n)| *n).collect::<Vec<_>>()
            );
        }
    }
    assert_eq!(total as u64, WRITERS * COMMANDS);
    let hits: u64 = repos.iter().map(|r| r.cache_stats().unwrap().hits).sum();
    assert!(hits > 0, "the caches were used");
}

/// Withdraws everything, refusing when there is nothing.
fn drain(state: &Tally) -> Result<TallyEvent, TooBig> {
    if state.added.is_empty() {
        Err(TooBig)
    } else {
        Ok(TallyEvent::Added(Added { n: 0 }))
    }
}

#[tokio::test]
async fn a_rejection_of_a_stale_cached_state_is_decided_again_on_the_fresh_state() {
    let store = CountingStore::default();
    let first = Repository::<Tally, _>::new(store.clone()).with_cache(10);
    let second = Repository::<Tally, _>::new(store.clone()).with_cache(10);
    let (a, b) = (id("a"), id("b"));

    // `first` caches `a` at version 0 (an empty tally) through a rejected command.
    assert!(
        first
            .execute(&a, drain)
            .await
            .unwrap_err()
            .rejected()
            .is_some()
    );
    assert_eq!(first.cache_stats().unwrap().len, 1);
    // Another process adds to `a`: the cached empty state is now stale.
    second.execute(&a, add(5)).await.unwrap();
    // The cached state would reject; the fresh one accepts.
    let done = first.execute(&a, drain).await.unwrap();
    assert_eq!(done.version(), 2);
    assert_eq!(done.state.added, vec![5, 0]);
    assert_eq!(first.cache_stats().unwrap().stale, 1);

    // A rejection on a cached state that is still fresh stands, without a reload.
    assert!(
        first
            .execute(&b, drain)
            .await
            .unwrap_err()
            .rejected()
            .is_some()
    );
    let reads = store.stream_reads();
    assert!(
        first
            .execute(&b, drain)
            .await
            .unwrap_err()
            .rejected()
            .is_some()
    );
    assert_eq!(
        store.stream_reads(),
        reads,
        "the version check is not a load"
    );
}
