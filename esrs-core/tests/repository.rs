//! Repository behaviour over the in-memory store: commands, conflicts and retries,
//! idempotency keys, snapshots, time travel and decode errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use esrs_core::error::ErrorChain;
use esrs_core::prelude::*;
use esrs_core::store::{AppendOutcome, AppendRequest, FoldItem, NewEvent, Snapshot, SnapshotKey};
use esrs_core::{DecodeError, Error, Position, RecordedEvent, Version};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

#[derive(Event, Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Added {
    by: u64,
}

#[derive(Event, Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Reset;

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Counter {
    total: u64,
    applied: u64,
}

#[derive(Debug, PartialEq, thiserror::Error)]
enum CounterError {
    #[error("the counter would exceed {0}")]
    TooBig(u64),
    #[error("the counter has already started")]
    AlreadyStarted,
}

#[aggregate(name = "counter")]
impl Counter {
    #[apply]
    fn added(&mut self, e: &Added) {
        self.applied += 1;
        self.total += e.by;
    }

    #[apply]
    fn reset(&mut self, _: &Reset) {
        self.applied += 1;
        self.total = 0;
    }

    /// Refused once anything was applied: a command whose repeat would be refused by the
    /// state its first run produced (like lending a book that is then lent).
    fn start(&self) -> Result<Added, CounterError> {
        if self.applied > 0 {
            return Err(CounterError::AlreadyStarted);
        }
        Ok(Added { by: 1 })
    }

    fn add(&self, by: u64) -> Result<Added, CounterError> {
        if self.total + by > 1_000_000 {
            return Err(CounterError::TooBig(1_000_000));
        }
        Ok(Added { by })
    }
}

/// The same aggregate, snapshotting every 10 events.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct SnappedCounter(Counter);

#[aggregate(name = "counter", snapshot_every = 10, event_enum = SnappedCounterEvent)]
impl SnappedCounter {
    #[apply]
    fn added(&mut self, e: &Added) {
        self.0.applied += 1;
        self.0.total += e.by;
    }

    #[apply]
    fn reset(&mut self, _: &Reset) {
        self.0.applied += 1;
        self.0.total = 0;
    }
}

fn id(s: &str) -> StreamId {
    StreamId::new(s).unwrap()
}

#[tokio::test]
async fn execute_appends_and_load_folds() {
    let repo = Repository::<Counter, _>::new(InMemoryStore::new());
    let alice = id("alice");
    let done = repo.execute(&alice, |c| c.add(5)).await.unwrap();
    assert_eq!(done.version(), 1);
    assert_eq!(done.events, [CounterEvent::Added(Added { by: 5 })]);
    assert_eq!(done.state.total, 5);
    repo.execute(&alice, |c| c.add(7)).await.unwrap();
    let loaded = repo.load(&alice).await.unwrap();
    assert_eq!((loaded.total, loaded.version), (12, 2));

    // The aggregate lives in its category's stream.
    let stream = repo.stream_of(&alice).unwrap();
    assert_eq!(stream.as_str(), "counter-alice");
    assert_eq!(repo.store().stream_version(&stream).await.unwrap(), 2);

    // A new aggregate is the default state at version 0.
    let fresh = repo.load(&id("nobody")).await.unwrap();
    assert_eq!(
        (fresh.state.clone(), fresh.version),
        (Counter::default(), 0)
    );
}

#[tokio::test]
async fn a_command_run_in_reaction_to_an_event_is_caused_by_it() {
    let store = InMemoryStore::new();
    let repo = Repository::<Counter, _>::new(store.clone());
    let request = esrs_core::uuid::Uuid::new_v4();
    repo.execute(&id("orders"), |c| c.add(5))
        .metadata(
            Metadata::new()
                .with_correlation_id(request)
                .with_actor("alice"),
        )
        .await
        .unwrap();
    let cause = repo
        .store()
        .read_stream(&repo.stream_of(&id("orders")).unwrap(), 1, 1)
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .remove(0);
    assert!(!cause.id.is_nil());

    // A policy reacts to the event with a command on another aggregate.
    repo.execute(&id("points"), |c| c.add(1))
        .caused_by(&cause)
        .await
        .unwrap();
    let effect = repo
        .store()
        .read_stream(&repo.stream_of(&id("points")).unwrap(), 1, 1)
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .remove(0);
    assert_eq!(effect.metadata.causation_id, Some(cause.id));
    assert_eq!(effect.metadata.correlation_id, Some(request));
    assert_eq!(effect.metadata.actor.as_deref(), Some("alice"));
    assert_ne!(effect.id, cause.id);
}

#[tokio::test]
async fn commands_can_return_several_events_or_none() {
    let repo = Repository::<Counter, _>::new(InMemoryStore::new());
    let bob = id("bob");
    let done = repo
        .execute(&bob, |_| {
            Ok::<_, CounterError>(vec![
                CounterEvent::Added(Added { by: 1 }),
                CounterEvent::Reset(Reset),
                CounterEvent::Added(Added { by: 3 }),
            ])
        })
        .await
        .unwrap();
    assert_eq!(
        (done.outcome.first_version, done.outcome.last_version),
        (1, 3)
    );
    assert_eq!(done.state.total, 3);
    let nothing = repo
        .execute(&bob, |_| Ok::<_, CounterError>(()))
        .await
        .unwrap();
    assert!(nothing.outcome.is_empty());
    assert_eq!(repo.load(&bob).await.unwrap().version, 3);
}

#[tokio::test]
async fn a_rejected_command_writes_nothing() {
    let repo = Repository::<Counter, _>::new(InMemoryStore::new());
    let carol = id("carol");
    let err = repo
        .execute(&carol, |c| c.add(2_000_000))
        .await
        .unwrap_err();
    assert_eq!(err.rejected(), Some(&CounterError::TooBig(1_000_000)));
    assert!(!err.is_conflict());
    assert_eq!(
        err.to_string(),
        "command rejected: the counter would exceed 1000000"
    );
    assert!(repo.store().is_empty());
}

/// A store that lets another writer append to the stream right before some of our appends
/// and, with `key_race`, answers its first idempotency-key lookup "unknown" only after the
/// same keyed request has run to completion through another repository on that aggregate:
/// the double click whose first request commits between the second's key lookup and its
/// load.
struct RacingStore {
    inner: InMemoryStore,
    races_left: AtomicUsize,
    key_race: Option<StreamId>,
}

impl RacingStore {
    fn new(races: usize) -> Self {
        Self {
            inner: InMemoryStore::new(),
            races_left: AtomicUsize::new(races),
            key_race: None,
        }
    }
}

impl EventStore for RacingStore {
    async fn append(&self, request: AppendRequest) -> esrs_core::Result<AppendOutcome> {
        if self.races_left.load(Ordering::SeqCst) > 0 {
            self.races_left.fetch_sub(1, Ordering::SeqCst);
            let rival = CounterEvent::from(Added { by: 100 });
            self.inner
                .append(AppendRequest::new(
                    request.stream.clone(),
                    ExpectedVersion::Any,
                    vec![NewEvent::encode(&rival).unwrap()],
                ))
                .await?;
        }
        self.inner.append(request).await
    }
    fn read_stream(
        &self,
        stream: &StreamId,
        from: Version,
        to: Version,
    ) -> esrs_core::store::EventStream<'_> {
        self.inner.read_stream(stream, from, to)
    }
    fn read_for_fold(
        &self,
        stream: &StreamId,
        from: Version,
        to: Version,
        snapshot: Option<esrs_core::store::SnapshotKey>,
    ) -> esrs_core::store::FoldStream<'_> {
        self.inner.read_for_fold(stream, from, to, snapshot)
    }
    fn read_all(&self, after: Position) -> esrs_core::store::EventStream<'_> {
        self.inner.read_all(after)
    }
    async fn save_snapshot(&self, snapshot: Snapshot) -> esrs_core::Result<()> {
        self.inner.save_snapshot(snapshot).await
    }
    async fn load_snapshot(
        &self,
        stream: &StreamId,
        key: SnapshotKey,
    ) -> esrs_core::Result<Option<Snapshot>> {
        self.inner.load_snapshot(stream, key).await
    }
    async fn find_idempotency_key(
        &self,
        key: &IdempotencyKey,
    ) -> esrs_core::Result<Option<esrs_core::store::IdempotencyRecord>> {
        if let Some(aggregate) = &self.key_race {
            if self.races_left.swap(0, Ordering::SeqCst) > 0 {
                Repository::<Counter, _>::new(self.inner.clone())
                    .execute(aggregate, |c| c.start())
                    .idempotency_key(key.clone())
                    .await
                    .expect("the first request succeeds");
                return Ok(None);
            }
        }
        self.inner.find_idempotency_key(key).await
    }
    async fn stream_version(&self, stream: &StreamId) -> esrs_core::Result<Version> {
        self.inner.stream_version(stream).await
    }
}

#[tokio::test]
async fn a_conflict_is_a_typed_error_without_retries() {
    let store = RacingStore::new(1);
    let repo = Repository::<Counter, _>::new(store);
    let dave = id("dave");
    let err = repo.execute(&dave, |c| c.add(1)).await.unwrap_err();
    assert!(err.is_conflict());
    match err {
        ExecuteError::Failed(Error::Conflict(c)) => {
            assert_eq!((c.expected, c.actual), (ExpectedVersion::Exact(0), 1));
            assert_eq!(c.stream.as_str(), "counter-dave");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        repo.load(&dave).await.unwrap().total,
        100,
        "only the rival's event is stored"
    );
}

#[tokio::test]
async fn retries_reload_and_decide_again_a_bounded_number_of_times() {
    let store = RacingStore::new(2);
    let repo = Repository::<Counter, _>::new(store);
    let erin = id("erin");
    let runs = AtomicUsize::new(0);
    let seen = std::sync::Mutex::new(Vec::new());
    let done = repo
        .execute(&erin, |c| {
            runs.fetch_add(1, Ordering::SeqCst);
            seen.lock().unwrap().push(c.total);
            c.add(1)
        })
        .retries(2)
        .await
        .unwrap();
    assert_eq!(
        runs.load(Ordering::SeqCst),
        3,
        "the command ran once per attempt"
    );
    assert_eq!(
        *seen.lock().unwrap(),
        [0, 100, 200],
        "each attempt saw the reloaded state"
    );
    assert_eq!((done.state.total, done.version()), (201, 3));

    // Out of retries: the conflict surfaces.
    repo.store().races_left.store(3, Ordering::SeqCst);
    let err = repo
        .execute(&erin, |c| c.add(1))
        .retries(2)
        .await
        .unwrap_err();
    assert!(err.is_conflict());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_commands_with_retries_lose_no_update() {
    let repo = Arc::new(Repository::<Counter, _>::new(InMemoryStore::new()).with_retries(100));
    let frank = id("frank");
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let (repo, frank) = (repo.clone(), frank.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                repo.execute(&frank, |c| c.add(t + 1)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let loaded = repo.load(&frank).await.unwrap();
    assert_eq!(loaded.version, 160);
    assert_eq!(loaded.total, (1..=16).sum::<u64>() * 10);
}

#[tokio::test]
async fn an_idempotency_key_runs_the_command_once() {
    let repo = Repository::<Counter, _>::new(InMemoryStore::new());
    let gina = id("gina");
    let runs = AtomicUsize::new(0);
    let first = repo
        .execute(&gina, |c| {
            runs.fetch_add(1, Ordering::SeqCst);
            c.add(10)
        })
        .idempotency_key(IdempotencyKey::new("click-1").unwrap())
        .await
        .unwrap();
    repo.execute(&gina, |c| c.add(1)).await.unwrap();
    let again = repo
        .execute(&gina, |c| {
            runs.fetch_add(1, Ordering::SeqCst);
            c.add(10)
        })
        .idempotency_key(IdempotencyKey::new("click-1").unwrap())
        .await
        .unwrap();
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the repeat did not run the command"
    );
    assert!(again.outcome.deduplicated && !first.outcome.deduplicated);
    assert_eq!(
        (again.outcome.first_version, again.outcome.last_version),
        (1, 1)
    );
    assert_eq!(
        again.events, first.events,
        "the repeat returns the original events"
    );
    assert_eq!(again.state.total, 10, "and the state right after them");
    assert_eq!(
        repo.load(&gina).await.unwrap().total,
        11,
        "nothing appended twice"
    );

    let err = repo
        .execute(&id("hank"), |c| c.add(10))
        .idempotency_key(IdempotencyKey::new("click-1").unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ExecuteError::Failed(Error::IdempotencyKeyReused { original_stream, .. }) if original_stream.as_str() == "counter-gina"),
        "got {err:?}"
    );
    assert_eq!(repo.load(&id("hank")).await.unwrap().version, 0);
}

#[tokio::test]
async fn a_repeat_that_races_its_original_gets_the_original_outcome() {
    let kim = id("kim");
    let store = RacingStore {
        key_race: Some(kim.clone()),
        ..RacingStore::new(1)
    };
    let repo = Repository::<Counter, _>::new(store);
    let repeat = repo
        .execute(&kim, |c| c.start())
        .idempotency_key(IdempotencyKey::new("double-click").unwrap())
        .await
        .expect("the repeat gets the original outcome, not the refusal of the new state");
    assert!(repeat.outcome.deduplicated);
    assert_eq!(repeat.events, [CounterEvent::from(Added { by: 1 })]);
    assert_eq!((repeat.version(), repeat.state.total), (1, 1));
    assert_eq!(repo.load(&kim).await.unwrap().version(), 1, "appended once");

    // A refusal without a key, or with a key nobody used, still stands.
    let refused = repo.execute(&kim, |c| c.start()).await.unwrap_err();
    assert_eq!(refused.rejected(), Some(&CounterError::AlreadyStarted));
    let refused = repo
        .execute(&kim, |c| c.start())
        .idempotency_key(IdempotencyKey::new("another-click").unwrap())
        .await
        .unwrap_err();
    assert_eq!(refused.rejected(), Some(&CounterError::AlreadyStarted));
}

#[tokio::test]
async fn a_key_of_a_raw_append_is_refused_for_a_command() {
    let repo = Repository::<Counter, _>::new(InMemoryStore::new());
    let lee = id("lee");
    let key = IdempotencyKey::new("req-raw").unwrap();
    let added = CounterEvent::from(Added { by: 5 });
    repo.store()
        .append(
            AppendRequest::new(
                repo.stream_of(&lee).unwrap(),
                ExpectedVersion::NoStream,
                vec![NewEvent::encode(&added).unwrap()],
            )
            .idempotency_key(key.clone()),
        )
        .await
        .unwrap();
    let runs = AtomicUsize::new(0);
    let err = repo
        .execute(&lee, |c| {
            runs.fetch_add(1, Ordering::SeqCst);
            c.add(1)
        })
        .idempotency_key(key.clone())
        .await
        .unwrap_err();
    match err {
        ExecuteError::Failed(Error::IdempotencyKeyMismatch { key: k, stream }) => {
            assert_eq!((k, stream.as_str()), (key, "counter-lee"));
        }
        other => panic!("expected IdempotencyKeyMismatch, got {other:?}"),
    }
    assert_eq!(runs.load(Ordering::SeqCst), 0, "the command did not run");
    assert_eq!(repo.load(&lee).await.unwrap().version(), 1);
}

#[tokio::test]
async fn an_id_too_long_for_its_category_is_a_typed_error() {
    let repo = Repository::<Counter, _>::new(InMemoryStore::new());
    let longest = id(&"x".repeat(esrs_core::StreamId::MAX_LEN));
    let err = repo.execute(&longest, |c| c.add(1)).await.unwrap_err();
    assert!(
        matches!(
            err,
            ExecuteError::Failed(Error::InvalidStreamId(
                esrs_core::error::StreamIdError::TooLong { .. }
            ))
        ),
        "got {err:?}"
    );
    assert!(matches!(
        repo.load(&longest).await,
        Err(Error::InvalidStreamId(_))
    ));
    assert!(repo.store().is_empty());
}

#[tokio::test]
async fn idempotency_keys_expire_after_the_retention() {
    let store =
        InMemoryStore::new().with_idempotency_retention(std::time::Duration::from_millis(200));
    let repo = Repository::<Counter, _>::new(store);
    let max = id("max");
    let key = IdempotencyKey::new("pay-1").unwrap();
    let run = || {
        repo.execute(&max, |c| c.add(3))
            .idempotency_key(key.clone())
    };
    assert!(!run().await.unwrap().outcome.deduplicated);
    assert!(
        run().await.unwrap().outcome.deduplicated,
        "a repeat within the retention"
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        repo.store()
            .find_idempotency_key(&key)
            .await
            .unwrap()
            .is_none(),
        "an expired key is forgotten"
    );
    let after = run().await.unwrap();
    assert!(
        !after.outcome.deduplicated,
        "a repeat after expiry is a new request"
    );
    assert_eq!((after.version(), after.state.total), (2, 6));
    assert!(
        run().await.unwrap().outcome.deduplicated,
        "and the key is kept again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_retries_of_one_key_append_once() {
    let repo = Arc::new(Repository::<Counter, _>::new(InMemoryStore::new()).with_retries(5));
    let ivy = id("ivy");
    let barrier = Arc::new(tokio::sync::Barrier::new(20));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (repo, ivy, barrier) = (repo.clone(), ivy.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            repo.execute(&ivy, |c| c.add(7))
                .idempotency_key(IdempotencyKey::new("pay-9").unwrap())
                .await
                .unwrap()
        }));
    }
    let mut written = 0;
    for t in tasks {
        let done = t.await.unwrap();
        written += usize::from(!done.outcome.deduplicated);
        assert_eq!((done.outcome.last_version, done.state.total), (1, 7));
    }
    assert_eq!(written, 1);
    assert_eq!(repo.load(&ivy).await.unwrap().version, 1);
}

#[tokio::test]
async fn snapshots_every_n_events_and_are_only_an_optimisation() {
    let store = InMemoryStore::new();
    let repo = Repository::<SnappedCounter, _>::new(store.clone());
    let jay = id("jay");
    for i in 0..25 {
        repo.execute(&jay, |c| c.0.add(i)).await.unwrap();
    }
    let stream = repo.stream_of(&jay).unwrap();
    let snapshot = store
        .load_snapshot(&stream, SnappedCounter::SNAPSHOT_KEY)
        .await
        .unwrap()
        .expect("a snapshot");
    assert_eq!(snapshot.version, 20);

    // The load uses the snapshot plus five events.
    let items: Vec<FoldItem> = futures_util::TryStreamExt::try_collect(store.read_for_fold(
        &stream,
        1,
        Version::MAX,
        Some(SnappedCounter::SNAPSHOT_KEY),
    ))
    .await
    .unwrap();
    assert_eq!(items.len(), 6);
    let with_snapshot = repo.load(&jay).await.unwrap();
    assert_eq!(with_snapshot.version, 25);
    assert_eq!(with_snapshot.state.0.total, (0..25).sum::<u64>());
    // `applied` counts apply calls since the snapshot's state: it was saved after 20.
    assert_eq!(with_snapshot.state.0.applied, 25);

    // Deleting snapshots changes no result.
    store.clear_snapshots();
    assert_eq!(repo.load(&jay).await.unwrap(), with_snapshot);

    // A snapshot that does not decode is ignored (and logged), never an error.
    store
        .save_snapshot(Snapshot::new(
            stream.clone(),
            25,
            SnappedCounter::SNAPSHOT_KEY,
            esrs_core::conformance::payload(serde_json::json!({"garbage": true})),
        ))
        .await
        .unwrap();
    assert_eq!(repo.load(&jay).await.unwrap(), with_snapshot);

    // A snapshot of another key (another fold) is not used: this one lies about the total.
    let lie = SnappedCounter(Counter {
        total: 999,
        applied: 25,
    });
    store
        .save_snapshot(Snapshot::new(
            stream.clone(),
            25,
            SnapshotKey::new(1, 7),
            serde_json::value::to_raw_value(&lie).unwrap(),
        ))
        .await
        .unwrap();
    assert_eq!(repo.load(&jay).await.unwrap(), with_snapshot);
}

#[tokio::test]
async fn load_at_a_version_and_as_of_a_time() {
    let repo = Repository::<Counter, _>::new(InMemoryStore::new());
    let kim = id("kim");
    for by in [100, 200, 300] {
        repo.execute(&kim, |c| c.add(by)).await.unwrap();
    }
    let middle = chrono::Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    repo.execute(&kim, |c| c.add(400)).await.unwrap();

    let at2 = repo.load_at(&kim, 2).await.unwrap();
    assert_eq!((at2.total, at2.version), (300, 2));
    assert_eq!(repo.load_at(&kim, 0).await.unwrap().total, 0);
    assert_eq!(repo.load_at(&kim, 99).await.unwrap().version, 4);
    let then = repo.load_as_of(&kim, middle).await.unwrap();
    assert_eq!((then.total, then.version), (600, 3));
    let before = repo
        .load_as_of(&kim, middle - chrono::Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(before.version, 0);

    let history = repo.history(&kim).await.unwrap();
    assert_eq!(history.len(), 4);
    assert_eq!(history[3].event, CounterEvent::Added(Added { by: 400 }));
    assert_eq!(history[3].version(), 4);
}

#[tokio::test]
async fn metadata_is_stored_with_every_event_of_a_command() {
    let repo = Repository::<Counter, _>::new(InMemoryStore::new());
    let lee = id("lee");
    let correlation = uuid::Uuid::new_v4();
    repo.execute(&lee, |_| {
        Ok::<_, CounterError>(vec![CounterEvent::Reset(Reset), CounterEvent::Reset(Reset)])
    })
    .metadata(
        Metadata::new()
            .with_actor("admin")
            .with_correlation_id(correlation)
            .with("reason", "audit"),
    )
    .await
    .unwrap();
    let history = repo.history(&lee).await.unwrap();
    for entry in &history {
        assert_eq!(entry.recorded.metadata.actor.as_deref(), Some("admin"));
        assert_eq!(entry.recorded.metadata.correlation_id, Some(correlation));
        assert_eq!(entry.recorded.metadata.custom["reason"], "audit");
    }
}

async fn raw_append(
    store: &InMemoryStore,
    stream: &StreamId,
    name: &'static str,
    version: u32,
    json: &str,
) {
    let payload = RawValue::from_string(json.to_owned()).unwrap();
    store
        .append(AppendRequest::new(
            stream.clone(),
            ExpectedVersion::Any,
            vec![NewEvent::new(name, version, payload)],
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn bad_stored_events_are_typed_errors_and_other_streams_stay_readable() {
    let store = InMemoryStore::new();
    let repo = Repository::<Counter, _>::new(store.clone());
    let cases: [(&str, &'static str, u32, &str); 3] = [
        ("unknown", "Teleported", 1, "{}"),
        ("future", "Added", 9, r#"{"by":1}"#),
        ("malformed", "Added", 1, r#"{"by":"many"}"#),
    ];
    for (name, event, version, json) in cases {
        raw_append(
            &store,
            &repo.stream_of(&id(name)).unwrap(),
            event,
            version,
            json,
        )
        .await;
    }
    repo.execute(&id("fine"), |c| c.add(1)).await.unwrap();

    let err = repo.load(&id("unknown")).await.unwrap_err();
    assert!(
        matches!(&err, Error::Decode { version: 1, source: DecodeError::UnknownName { name, .. }, .. } if name == "Teleported"),
        "{err:?}"
    );
    assert_eq!(
        ErrorChain::new(&err).to_string(),
        "cannot decode event at version 1 of stream `counter-unknown`: unknown event name `Teleported`; this program knows [\"Added\", \"Reset\"]"
    );
    let err = repo.load(&id("future")).await.unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Decode {
                source: DecodeError::UnknownVersion { version: 9, .. },
                ..
            }
        ),
        "{err:?}"
    );
    let err = repo.load(&id("malformed")).await.unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Decode {
                source: DecodeError::Malformed { .. },
                ..
            }
        ),
        "{err:?}"
    );
    // Commands on a broken stream fail the same way and write nothing.
    let err = repo
        .execute(&id("unknown"), |c| c.add(1))
        .await
        .unwrap_err();
    assert!(matches!(err, ExecuteError::Failed(Error::Decode { .. })));
    assert_eq!(store.len(), 4);

    assert_eq!(repo.load(&id("fine")).await.unwrap().total, 1);
}

#[tokio::test]
async fn an_oversized_event_is_refused_with_advice() {
    let repo = Repository::<Counter, _>::new(InMemoryStore::with_max_payload_bytes(16));
    let err = repo
        .execute(&id("max"), |_| {
            Ok::<_, CounterError>(CounterEvent::Added(Added {
                by: 123_456_789_012,
            }))
        })
        .await
        .unwrap_err();
    match &err {
        ExecuteError::Failed(Error::PayloadTooLarge {
            name, size, limit, ..
        }) => {
            assert_eq!((*name, *size, *limit), ("Added", 19, 16));
        }
        other => panic!("expected PayloadTooLarge, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "event `Added` for stream `counter-max` is 19 bytes, over the limit of 16; keep events small: store the blob elsewhere and keep a reference to it in the event"
    );
    assert!(repo.store().is_empty());
}

#[test]
fn recorded_events_decode_into_the_event_set() {
    let payload = RawValue::from_string(r#"{"by":3}"#.to_owned()).unwrap();
    let recorded = RecordedEvent::new(
        Position::new(1, 1),
        id("counter-x"),
        1,
        "Added".to_owned(),
        1,
        payload,
        Metadata::default(),
        chrono::Utc::now(),
    );
    assert_eq!(
        recorded.decode::<CounterEvent>().unwrap(),
        CounterEvent::Added(Added { by: 3 })
    );
}
