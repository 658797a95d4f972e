//! Projection runners over the in-memory store: no event missed, none applied twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use esrs_core::error::EncodeError;
use esrs_core::projection::{CheckpointError, LogFilter, Phase};
use esrs_core::projection::{CheckpointStore, ErrorPolicy, InMemoryCheckpoints, ProjectionError};
use esrs_core::store::{AppendRequest, NewEvent, Payload};
use esrs_core::{
    BoxError, DecodeError, EventSet, EventStore, ExpectedVersion, InMemoryStore, Position,
    Projection, ProjectionRunner, RecordedEvent, StreamId,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

// ---------------------------------------------------------------------------------------
// Events

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Points {
    points: i64,
}

#[derive(Debug, Clone, PartialEq)]
enum ScoreEvent {
    Scored(Points),
    Penalised(Points),
}

impl ScoreEvent {
    fn delta(&self) -> i64 {
        match self {
            Self::Scored(p) => p.points,
            Self::Penalised(p) => -p.points,
        }
    }
}

impl EventSet for ScoreEvent {
    const NAMES: &'static [&'static str] = &["Scored", "Penalised"];
    fn name(&self) -> &'static str {
        match self {
            Self::Scored(_) => "Scored",
            Self::Penalised(_) => "Penalised",
        }
    }
    fn schema_version(&self) -> u32 {
        1
    }
    fn encode(&self) -> Result<Payload, EncodeError> {
        match self {
            Self::Scored(p) | Self::Penalised(p) => esrs_core::store::encode_json(self.name(), p),
        }
    }
    fn decode(name: &str, version: u32, payload: &str) -> Result<Self, DecodeError> {
        match name {
            "Scored" => Ok(Self::Scored(DecodeError::parse(
                "Scored", version, payload,
            )?)),
            "Penalised" => Ok(Self::Penalised(DecodeError::parse(
                "Penalised",
                version,
                payload,
            )?)),
            _ => Err(DecodeError::UnknownName {
                name: name.to_owned(),
                known: Self::NAMES.to_vec(),
            }),
        }
    }
}

fn event(name: &'static str, json: &str) -> NewEvent {
    NewEvent::new(name, 1, RawValue::from_string(json.to_owned()).unwrap())
}

fn scored(points: i64) -> NewEvent {
    NewEvent::encode(&ScoreEvent::Scored(Points { points })).unwrap()
}

fn penalised(points: i64) -> NewEvent {
    NewEvent::encode(&ScoreEvent::Penalised(Points { points })).unwrap()
}

/// An event no score projection handles, whose payload would not decode as a score event.
fn noise() -> NewEvent {
    event("Noise", r#"{"not":"a score"}"#)
}

async fn append(store: &InMemoryStore, stream: &str, events: Vec<NewEvent>) -> Position {
    let outcome = store
        .append(AppendRequest::new(
            StreamId::new(stream).unwrap(),
            ExpectedVersion::Any,
            events,
        ))
        .await
        .unwrap();
    outcome.last_position.unwrap()
}

/// Appends `n` events over `streams` streams: scores, penalties and noise.
async fn seed(store: &InMemoryStore, n: usize, streams: usize) -> Position {
    let mut last = Position::START;
    for i in 0..n {
        let e = match i % 5 {
            0 => penalised((i % 7) as i64),
            3 => noise(),
            _ => scored((i % 11) as i64 + 1),
        };
        last = append(store, &format!("player-{}", i % streams), vec![e]).await;
    }
    last
}

// ---------------------------------------------------------------------------------------
// Read model: totals per stream, and how many times each (stream, version) was applied.

#[derive(Debug, Clone, Default, PartialEq)]
struct Model {
    totals: BTreeMap<String, i64>,
    applied: BTreeMap<(String, u64), u32>,
}

impl Model {
    fn apply(&mut self, stream: &str, version: u64, delta: i64) {
        *self.totals.entry(stream.to_owned()).or_default() += delta;
        *self
            .applied
            .entry((stream.to_owned(), version))
            .or_default() += 1;
    }

    fn assert_each_applied_once(&self) {
        let doubles: Vec<_> = self.applied.iter().filter(|(_, n)| **n != 1).collect();
        assert!(doubles.is_empty(), "applied more than once: {doubles:?}");
    }
}

/// The score events of the store, applied once each: what every read model must equal.
async fn expected_model(store: &InMemoryStore) -> Model {
    use futures_util::StreamExt;
    let mut model = Model::default();
    let mut events = store.read_all(Position::START);
    while let Some(e) = events.next().await {
        let e = e.unwrap();
        if ScoreEvent::handles(&e.name) {
            let ev: ScoreEvent = e.decode().unwrap();
            model.apply(e.stream.as_str(), e.version, ev.delta());
        }
    }
    model
}

// ---------------------------------------------------------------------------------------
// A transactional in-memory read model: the handlers' changes and the checkpoint are
// committed together, under one lock, like a database read model in one transaction.

#[derive(Debug, Clone, Default)]
struct ModelStore {
    inner: Arc<Mutex<ModelState>>,
    /// When set, saves fail as for a runner whose lock was taken over.
    lock_lost: Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Debug, Default)]
struct ModelState {
    model: Model,
    checkpoints: HashMap<String, Position>,
}

/// The unit of work of [`ModelStore`]: changes not yet committed.
#[derive(Debug, Default)]
struct Pending {
    reset: bool,
    changes: Vec<(String, u64, i64)>,
    checkpoint: Option<(String, Position, Position)>,
}

impl ModelStore {
    fn model(&self) -> Model {
        self.inner.lock().unwrap().model.clone()
    }
    fn checkpoint(&self, name: &str) -> Option<Position> {
        self.inner.lock().unwrap().checkpoints.get(name).copied()
    }
}

impl CheckpointStore for ModelStore {
    type Tx = Pending;
    type Lock = ();

    async fn load(&self, projection: &str) -> Result<Position, CheckpointError> {
        Ok(self.checkpoint(projection).unwrap_or(Position::START))
    }
    async fn begin(&self) -> Result<Pending, CheckpointError> {
        Ok(Pending::default())
    }
    async fn save(
        &self,
        tx: &mut Pending,
        _lock: &(),
        projection: &str,
        from: Position,
        to: Position,
    ) -> Result<(), CheckpointError> {
        if self.lock_lost.load(Ordering::SeqCst) {
            return Err(CheckpointError::LockLost {
                projection: projection.to_owned(),
            });
        }
        tx.checkpoint = Some((projection.to_owned(), from, to));
        Ok(())
    }
    async fn commit(&self, tx: Pending) -> Result<(), CheckpointError> {
        let mut state = self.inner.lock().unwrap();
        if let Some((name, from, to)) = tx.checkpoint {
            let actual = state.checkpoints.get(&name).copied();
            if actual.unwrap_or(Position::START) != from {
                return Err(CheckpointError::Moved {
                    expected: from,
                    actual,
                });
            }
            state.checkpoints.insert(name, to);
        }
        if tx.reset {
            state.model = Model::default();
        }
        for (stream, version, delta) in tx.changes {
            state.model.apply(&stream, version, delta);
        }
        Ok(())
    }
    async fn try_lock(&self, _projection: &str) -> Result<Option<()>, CheckpointError> {
        Ok(Some(()))
    }
}

/// Test hooks shared by the projections below.
#[derive(Debug, Clone, Default)]
struct Hooks {
    /// Handler calls so far.
    calls: Arc<AtomicU64>,
    /// Fail when handling this (stream, version), `fail_times` times.
    fail_at: Option<(String, u64)>,
    fail_times: Arc<AtomicU64>,
    /// Block forever at this call number (from 1), after notifying `reached`.
    block_at: Option<u64>,
    reached: Arc<tokio::sync::Notify>,
}

impl Hooks {
    async fn before(&self, envelope: &RecordedEvent) -> Result<(), BoxError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if self.block_at == Some(call) {
            self.reached.notify_one();
            std::future::pending::<()>().await;
        }
        if let Some((stream, version)) = &self.fail_at {
            if envelope.stream.as_str() == stream
                && envelope.version == *version
                && self
                    .fail_times
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
            {
                return Err(format!("refused {stream}@{version}").into());
            }
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
struct TxScores {
    hooks: Hooks,
}

impl Projection<Pending> for TxScores {
    type Event = ScoreEvent;
    fn name(&self) -> &str {
        "scores"
    }
    async fn handle(
        &mut self,
        tx: &mut Pending,
        event: ScoreEvent,
        envelope: &RecordedEvent,
    ) -> Result<(), BoxError> {
        self.hooks.before(envelope).await?;
        tx.changes.push((
            envelope.stream.as_str().to_owned(),
            envelope.version,
            event.delta(),
        ));
        Ok(())
    }
    async fn reset(&mut self, tx: &mut Pending) -> Result<(), BoxError> {
        tx.reset = true;
        Ok(())
    }
}

/// An external read model (at-least-once delivery) that ignores events it already applied,
/// by their (stream, version).
#[derive(Debug, Clone, Default)]
struct ExternalScores {
    model: Arc<Mutex<Model>>,
    hooks: Hooks,
}

impl Projection for ExternalScores {
    type Event = ScoreEvent;
    fn name(&self) -> &str {
        "external-scores"
    }
    async fn handle(
        &mut self,
        _tx: &mut (),
        event: ScoreEvent,
        envelope: &RecordedEvent,
    ) -> Result<(), BoxError> {
        self.hooks.before(envelope).await?;
        let mut model = self.model.lock().unwrap();
        let key = (envelope.stream.as_str().to_owned(), envelope.version);
        if !model.applied.contains_key(&key) {
            model.apply(&key.0, key.1, event.delta());
        }
        Ok(())
    }
    async fn reset(&mut self, _tx: &mut ()) -> Result<(), BoxError> {
        *self.model.lock().unwrap() = Model::default();
        Ok(())
    }
}

async fn fresh_rebuild(store: &InMemoryStore) -> Model {
    let models = ModelStore::default();
    let mut runner = ProjectionRunner::new(store.clone(), models.clone(), TxScores::default());
    runner.rebuild().await.unwrap();
    models.model()
}

// ---------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn catch_up_skips_unhandled_events_without_decoding_them() {
    let store = InMemoryStore::new();
    let head = seed(&store, 300, 7).await;
    let models = ModelStore::default();
    let mut runner =
        ProjectionRunner::new(store.clone(), models.clone(), TxScores::default()).batch_size(64);
    assert_eq!(runner.catch_up().await.unwrap(), head);
    let model = models.model();
    model.assert_each_applied_once();
    assert_eq!(model, expected_model(&store).await);
    // 300 events, 60 of them noise (which would not decode as a score event): the
    // projection's filter (the names of its event enum) leaves them in the store, so they
    // are neither read nor counted as skipped.
    let status = runner.status();
    assert_eq!((status.handled, status.skipped), (240, 0));
    assert_eq!(status.checkpoint, head);
    assert_eq!(status.head, Some(head));
    assert_eq!(runner.projection().hooks.calls.load(Ordering::SeqCst), 240);
    assert_eq!(models.checkpoint("scores"), Some(head));

    // Running again reads nothing new; new events are picked up from the checkpoint.
    assert_eq!(runner.catch_up().await.unwrap(), head);
    assert_eq!(models.model(), model);
    let head = append(&store, "player-new", vec![scored(5), noise()]).await;
    assert_eq!(runner.catch_up().await.unwrap(), head);
    assert_eq!(models.model().totals["player-new"], 5);
    assert_eq!(runner.projection().hooks.calls.load(Ordering::SeqCst), 241);
}

#[tokio::test]
async fn a_handled_event_that_does_not_decode_stops_the_runner_before_it() {
    let store = InMemoryStore::new();
    let good = append(&store, "a", vec![scored(1), scored(2)]).await;
    append(&store, "b", vec![scored(3)]).await;
    append(&store, "c", vec![event("Scored", r#"{"points":"many"}"#)]).await;
    append(&store, "d", vec![scored(4)]).await;
    let models = ModelStore::default();
    let mut runner =
        ProjectionRunner::new(store.clone(), models.clone(), TxScores::default()).batch_size(2);
    let err = runner.catch_up().await.unwrap_err();
    match &err {
        ProjectionError::Decode {
            projection,
            stream,
            version,
            source: DecodeError::Malformed { .. },
            ..
        } => {
            assert_eq!(projection, "scores");
            assert_eq!((stream.as_str(), *version), ("c", 1));
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    // The batches before the bad event were committed; nothing at or after it.
    assert_eq!(models.checkpoint("scores"), Some(good));
    assert_eq!(models.model().totals["a"], 3);
    assert_eq!(models.model().totals.get("b"), None);
    assert_eq!(models.model().totals.get("d"), None);
    assert!(matches!(runner.status().phase, Phase::Failed { .. }));
    // Running again fails again on the same event: it is never skipped.
    assert!(matches!(
        runner.catch_up().await,
        Err(ProjectionError::Decode { .. })
    ));
    assert_eq!(models.checkpoint("scores"), Some(good));
}

#[tokio::test]
async fn a_failing_handler_stops_the_runner_and_the_batch_is_not_committed() {
    let store = InMemoryStore::new();
    seed(&store, 100, 4).await;
    let models = ModelStore::default();
    let hooks = Hooks {
        fail_at: Some(("player-2".into(), 9)),
        fail_times: Arc::new(AtomicU64::new(1)),
        ..Hooks::default()
    };
    let mut runner =
        ProjectionRunner::new(store.clone(), models.clone(), TxScores { hooks }).batch_size(16);
    let err = runner.catch_up().await.unwrap_err();
    let ProjectionError::Handler {
        stream,
        version,
        position,
        ..
    } = &err
    else {
        panic!("expected a handler error, got {err:?}");
    };
    assert_eq!((stream.as_str(), *version), ("player-2", 9));
    let checkpoint = models.checkpoint("scores").unwrap_or(Position::START);
    assert!(checkpoint < *position);
    let committed = models.model();
    committed.assert_each_applied_once();
    assert!(!committed.applied.contains_key(&("player-2".into(), 9)));

    // The failure was a one-off: a second run handles the rest, and nothing twice.
    runner.catch_up().await.unwrap();
    let model = models.model();
    model.assert_each_applied_once();
    assert_eq!(model, fresh_rebuild(&store).await);
}

#[tokio::test]
async fn retry_policy_retries_the_batch_then_gives_up() {
    let store = InMemoryStore::new();
    seed(&store, 60, 3).await;
    let retry = ErrorPolicy::Retry {
        max: 2,
        backoff: Duration::from_millis(1),
    };

    // Fails twice, then succeeds: within the policy.
    let models = ModelStore::default();
    let hooks = Hooks {
        fail_at: Some(("player-1".into(), 7)),
        fail_times: Arc::new(AtomicU64::new(2)),
        ..Hooks::default()
    };
    let mut runner = ProjectionRunner::new(store.clone(), models.clone(), TxScores { hooks })
        .batch_size(8)
        .error_policy(retry);
    runner.catch_up().await.unwrap();
    models.model().assert_each_applied_once();
    assert_eq!(models.model(), fresh_rebuild(&store).await);

    // Fails three times: one try and two retries, then the error.
    let models = ModelStore::default();
    let fail_times = Arc::new(AtomicU64::new(3));
    let hooks = Hooks {
        fail_at: Some(("player-1".into(), 7)),
        fail_times: fail_times.clone(),
        ..Hooks::default()
    };
    let mut runner = ProjectionRunner::new(store.clone(), models.clone(), TxScores { hooks })
        .batch_size(8)
        .error_policy(retry);
    assert!(matches!(
        runner.catch_up().await,
        Err(ProjectionError::Handler { .. })
    ));
    assert_eq!(fail_times.load(Ordering::SeqCst), 0);
    assert!(!models.model().applied.contains_key(&("player-1".into(), 7)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_mid_batch_then_restart_equals_a_fresh_rebuild() {
    let store = InMemoryStore::new();
    seed(&store, 1_000, 13).await;
    let models = ModelStore::default();
    let hooks = Hooks {
        block_at: Some(450),
        ..Hooks::default()
    };
    let reached = hooks.reached.clone();
    let running = ProjectionRunner::new(store.clone(), models.clone(), TxScores { hooks })
        .batch_size(100)
        .spawn();
    reached.notified().await;
    // The runner is stuck in the middle of a batch: kill it like a crash.
    running.abort().await;
    let checkpoint = models.checkpoint("scores").unwrap();
    let partial = models.model();
    partial.assert_each_applied_once();
    // 450 handled events are 562 read events (one in five is noise); the batches of 100
    // read events before it were committed, the one in progress was not.
    assert_eq!(checkpoint.sequence, 500);
    assert_eq!(partial.applied.len(), 400);

    // Restart: it resumes from the checkpoint and follows live.
    let restarted = ProjectionRunner::new(store.clone(), models.clone(), TxScores::default())
        .batch_size(100)
        .spawn();
    restarted.wait_caught_up().await.unwrap();
    let more = append(&store, "late", vec![scored(9), penalised(2)]).await;
    restarted.wait_for(more).await.unwrap();
    let runner = restarted.stop().await.unwrap();
    // It handled only what the crashed runner had not committed.
    assert_eq!(runner.projection().hooks.calls.load(Ordering::SeqCst), 402);
    let model = models.model();
    model.assert_each_applied_once();
    assert_eq!(model, fresh_rebuild(&store).await);
    assert_eq!(model, expected_model(&store).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_read_model_gets_a_batch_again_after_a_crash_and_stays_right() {
    let store = InMemoryStore::new();
    seed(&store, 500, 9).await;
    let checkpoints = InMemoryCheckpoints::new();
    let projection = ExternalScores {
        hooks: Hooks {
            block_at: Some(230),
            ..Hooks::default()
        },
        ..ExternalScores::default()
    };
    let model = projection.model.clone();
    let reached = projection.hooks.reached.clone();
    let running = ProjectionRunner::new(store.clone(), checkpoints.clone(), projection)
        .batch_size(50)
        .spawn();
    reached.notified().await;
    running.abort().await;
    // 229 events were applied, but the checkpoint covers only the committed batches.
    assert_eq!(model.lock().unwrap().applied.len(), 229);
    assert_eq!(checkpoints.get("external-scores").unwrap().sequence, 250);

    let restarted = ExternalScores {
        model: model.clone(),
        hooks: Hooks::default(),
    };
    let calls = restarted.hooks.calls.clone();
    let mut runner = ProjectionRunner::new(store.clone(), checkpoints.clone(), restarted);
    runner.catch_up().await.unwrap();
    // At-least-once: the events after the checkpoint were delivered again …
    assert_eq!(calls.load(Ordering::SeqCst), 400 - 200);
    // … and the idempotent handler applied each event once.
    let model = model.lock().unwrap().clone();
    model.assert_each_applied_once();
    assert_eq!(model, fresh_rebuild(&store).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_concurrent_writers_while_live_equals_a_fresh_rebuild() {
    let store = InMemoryStore::new();
    seed(&store, 100, 5).await;
    let models = ModelStore::default();
    let running = ProjectionRunner::new(store.clone(), models.clone(), TxScores::default())
        .batch_size(32)
        .poll_interval(Duration::from_millis(200))
        .spawn();
    let mut writers = Vec::new();
    for w in 0..8 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let mut last = Position::START;
            for i in 0..150u64 {
                let stream = format!("w{w}-s{}", i % 6);
                let events = match i % 4 {
                    0 => vec![scored(i as i64), penalised(1), noise()],
                    1 => vec![noise()],
                    _ => vec![scored(w as i64 + 1)],
                };
                last = last.max(append(&store, &stream, events).await);
                if i % 16 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            last
        }));
    }
    let mut head = Position::START;
    for w in writers {
        head = head.max(w.await.unwrap());
    }
    running.wait_for(head).await.unwrap();
    let status = running.status();
    let runner = running.stop().await.unwrap();
    assert_eq!(runner.status().phase, Phase::Stopped);

    let model = models.model();
    model.assert_each_applied_once();
    let expected = expected_model(&store).await;
    assert_eq!(model.applied.len(), expected.applied.len());
    assert_eq!(model, expected);
    assert_eq!(model, fresh_rebuild(&store).await);
    assert_eq!(status.checkpoint, head);
    assert_eq!(
        (status.handled, status.skipped),
        (expected.applied.len() as u64, 0),
        "every event of the projection's names read exactly once, and no other"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_equals_the_incremental_result() {
    let store = InMemoryStore::new();
    let models = ModelStore::default();
    let mut runner =
        ProjectionRunner::new(store.clone(), models.clone(), TxScores::default()).batch_size(10);
    for round in 0..5 {
        seed(&store, 37 + round, 3 + round).await;
        runner.catch_up().await.unwrap();
    }
    let incremental = models.model();
    incremental.assert_each_applied_once();

    runner.rebuild().await.unwrap();
    assert_eq!(runner.status().rebuilds, 1);
    assert_eq!(models.model(), incremental);

    // A rebuild requested from a running projection gives the same result too.
    let running = runner.spawn();
    running.wait_caught_up().await.unwrap();
    running.request_rebuild();
    let mut status = running.subscribe();
    status
        .wait_for(|s| s.rebuilds == 2 && s.is_caught_up())
        .await
        .unwrap();
    let runner = running.stop().await.unwrap();
    assert_eq!(runner.status().rebuilds, 2);
    assert_eq!(models.model(), incremental);
    assert_eq!(incremental, expected_model(&store).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_runner_per_projection_at_a_time() {
    let store = InMemoryStore::new();
    seed(&store, 20, 2).await;
    let checkpoints = InMemoryCheckpoints::new();
    let first = ProjectionRunner::new(
        store.clone(),
        checkpoints.clone(),
        ExternalScores::default(),
    )
    .spawn();
    first.wait_caught_up().await.unwrap();

    let mut second = ProjectionRunner::new(
        store.clone(),
        checkpoints.clone(),
        ExternalScores::default(),
    );
    assert!(matches!(
        second.catch_up().await,
        Err(ProjectionError::AlreadyRunning { projection }) if projection == "external-scores"
    ));

    // A runner told to wait starts once the first one stops.
    let waiting = ProjectionRunner::new(
        store.clone(),
        checkpoints.clone(),
        ExternalScores::default(),
    )
    .wait_for_lock(Duration::from_millis(5))
    .spawn();
    let mut status = waiting.subscribe();
    status
        .wait_for(|s| s.phase == Phase::WaitingForLock)
        .await
        .unwrap();
    first.stop().await.unwrap();
    waiting.wait_caught_up().await.unwrap();
    // It resumed from the first runner's checkpoint: it had nothing left to handle.
    let runner = waiting.stop().await.unwrap();
    assert_eq!(runner.projection().hooks.calls.load(Ordering::SeqCst), 0);
    assert_eq!(runner.status().handled, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_lag_and_stop_commits_progress() {
    let store = InMemoryStore::new();
    let head = seed(&store, 50, 5).await;
    let models = ModelStore::default();
    let runner = ProjectionRunner::new(store.clone(), models.clone(), TxScores::default());
    let status = runner.status();
    assert_eq!(status.phase, Phase::Idle);
    assert_eq!(status.checkpoint, Position::START);

    let running = runner.spawn();
    running.wait_caught_up().await.unwrap();
    let status = running.status();
    assert!(status.is_caught_up());
    assert_eq!(status.checkpoint, head);
    assert_eq!(status.events_behind(), Some(0));
    assert_eq!(status.time_behind(), Duration::ZERO);
    assert!(status.last_recorded_at.is_some());

    let next = append(&store, "x", vec![scored(1)]).await;
    running.wait_for(next).await.unwrap();
    let runner = running.stop().await.unwrap();
    assert_eq!(models.checkpoint("scores"), Some(next));
    assert_eq!(runner.status().phase, Phase::Stopped);

    // Stopped, it reports its lag against the head it last saw.
    let mut stale = runner.status();
    stale.phase = Phase::CatchingUp;
    stale.head = Some(Position::new(next.transaction_id + 10, next.sequence + 10));
    assert_eq!(stale.events_behind(), Some(10));
}

/// A projection over a set of stored names, reading raw JSON.
#[derive(Debug, Default)]
struct NameCounter {
    seen: BTreeMap<String, u64>,
    /// Whether it declares its names as its filter too, so that the store leaves the
    /// others out.
    filtered: bool,
}

impl Projection for NameCounter {
    type Event = serde_json::Value;
    fn name(&self) -> &str {
        "names"
    }
    fn handles(&self, name: &str) -> bool {
        ["Noise", "Penalised"].contains(&name)
    }
    fn filter(&self) -> LogFilter {
        if self.filtered {
            LogFilter::names(["Noise", "Penalised"])
        } else {
            LogFilter::all()
        }
    }
    async fn handle(
        &mut self,
        _tx: &mut (),
        event: serde_json::Value,
        envelope: &RecordedEvent,
    ) -> Result<(), BoxError> {
        assert!(event.is_object());
        *self.seen.entry(envelope.name.to_string()).or_default() += 1;
        Ok(())
    }
}

#[tokio::test]
async fn a_projection_can_read_a_set_of_stored_names() {
    let store = InMemoryStore::new();
    seed(&store, 100, 3).await;
    let mut runner = ProjectionRunner::new(
        store.clone(),
        InMemoryCheckpoints::new(),
        NameCounter::default(),
    );
    runner.catch_up().await.unwrap();
    let seen = &runner.projection().seen;
    assert_eq!(seen.get("Noise"), Some(&20));
    assert_eq!(seen.get("Penalised"), Some(&20));
    assert_eq!(seen.get("Scored"), None);
    assert_eq!(runner.status().skipped, 60);
}

#[tokio::test]
async fn a_filtered_projection_reads_its_names_only_and_its_checkpoint_passes_the_rest() {
    let store = InMemoryStore::new();
    // The last of the 100 events is a `Scored`, which the projection does not read.
    let head = seed(&store, 100, 3).await;
    let checkpoints = InMemoryCheckpoints::new();
    let projection = NameCounter {
        filtered: true,
        ..NameCounter::default()
    };
    let mut runner = ProjectionRunner::new(store.clone(), checkpoints.clone(), projection);
    assert_eq!(runner.catch_up().await.unwrap(), head);
    let seen = &runner.projection().seen;
    assert_eq!(seen.get("Noise"), Some(&20));
    assert_eq!(seen.get("Penalised"), Some(&20));
    let status = runner.status();
    assert_eq!((status.handled, status.skipped), (40, 0));
    assert_eq!(checkpoints.get("names"), Some(head));

    // Events it does not read move its checkpoint too, so a restart reads nothing again.
    let after = append(&store, "player-0", vec![scored(1), scored(2)]).await;
    assert_eq!(runner.catch_up().await.unwrap(), after);
    assert_eq!(runner.status().handled, 40);
    assert_eq!(checkpoints.get("names"), Some(after));
}

/// A store whose global reads and waits fail a given number of times first.
#[derive(Debug, Clone)]
struct FlakyStore {
    inner: InMemoryStore,
    read_failures: Arc<AtomicU64>,
    wait_failures: Arc<AtomicU64>,
    head_failures: Arc<AtomicU64>,
    /// Calls of `read_all` so far.
    reads: Arc<AtomicU64>,
    /// Calls of `head_position` so far.
    heads: Arc<AtomicU64>,
}

fn take_one(counter: &AtomicU64) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

fn unavailable() -> esrs_core::Error {
    esrs_core::Error::Unavailable {
        source: "connection reset".into(),
    }
}

impl EventStore for FlakyStore {
    async fn append(
        &self,
        request: AppendRequest,
    ) -> esrs_core::Result<esrs_core::store::AppendOutcome> {
        self.inner.append(request).await
    }
    fn read_stream(
        &self,
        stream: &StreamId,
        from: esrs_core::Version,
        to: esrs_core::Version,
    ) -> esrs_core::store::EventStream<'_> {
        self.inner.read_stream(stream, from, to)
    }
    fn read_for_fold(
        &self,
        stream: &StreamId,
        from: esrs_core::Version,
        to: esrs_core::Version,
        snapshot: Option<esrs_core::store::SnapshotKey>,
    ) -> esrs_core::store::FoldStream<'_> {
        self.inner.read_for_fold(stream, from, to, snapshot)
    }
    fn read_all(&self, after: Position) -> esrs_core::store::EventStream<'_> {
        use futures_util::StreamExt;
        self.reads.fetch_add(1, Ordering::SeqCst);
        if take_one(&self.read_failures) {
            // A few events, then the connection drops.
            return Box::pin(
                self.inner
                    .read_all(after)
                    .take(3)
                    .chain(futures_util::stream::once(async { Err(unavailable()) })),
            );
        }
        self.inner.read_all(after)
    }
    async fn save_snapshot(&self, snapshot: esrs_core::store::Snapshot) -> esrs_core::Result<()> {
        self.inner.save_snapshot(snapshot).await
    }
    async fn load_snapshot(
        &self,
        stream: &StreamId,
        key: esrs_core::store::SnapshotKey,
    ) -> esrs_core::Result<Option<esrs_core::store::Snapshot>> {
        self.inner.load_snapshot(stream, key).await
    }
    async fn find_idempotency_key(
        &self,
        key: &esrs_core::IdempotencyKey,
    ) -> esrs_core::Result<Option<esrs_core::store::IdempotencyRecord>> {
        self.inner.find_idempotency_key(key).await
    }
    async fn stream_version(&self, stream: &StreamId) -> esrs_core::Result<esrs_core::Version> {
        self.inner.stream_version(stream).await
    }
    async fn wait_for_events(&self, after: Position, timeout: Duration) -> esrs_core::Result<()> {
        if take_one(&self.wait_failures) {
            return Err(unavailable());
        }
        self.inner.wait_for_events(after, timeout).await
    }
    async fn head_position(&self) -> esrs_core::Result<Option<Position>> {
        self.heads.fetch_add(1, Ordering::SeqCst);
        if take_one(&self.head_failures) {
            return Err(unavailable());
        }
        self.inner.head_position().await
    }
}

/// The head of the log only feeds the lag report: failing to read it after a committed
/// batch neither stops the runner nor holds its status back.
#[tokio::test]
async fn a_failed_head_read_does_not_stop_the_runner() {
    let inner = InMemoryStore::new();
    let last = seed(&inner, 12, 3).await;
    let store = FlakyStore {
        inner: inner.clone(),
        read_failures: Arc::new(AtomicU64::new(0)),
        wait_failures: Arc::new(AtomicU64::new(0)),
        head_failures: Arc::new(AtomicU64::new(1)),
        reads: Arc::default(),
        heads: Arc::default(),
    };
    let models = ModelStore::default();
    let mut runner = ProjectionRunner::new(store.clone(), models.clone(), TxScores::default());
    runner
        .catch_up()
        .await
        .expect("the batch is handled and committed");
    assert_eq!(
        store.head_failures.load(Ordering::SeqCst),
        0,
        "the head read failed once"
    );
    assert_eq!(models.checkpoint("scores"), Some(last));
    assert_eq!(runner.status().checkpoint, last);
}

/// A runner catching up reads the head of the log for its lag report now and then, not
/// after every batch (on a database, that is a query per batch); its status still ends at
/// the head.
#[tokio::test]
async fn catching_up_reads_the_head_now_and_then() {
    let inner = InMemoryStore::new();
    let last = seed(&inner, 2_000, 10).await;
    let store = FlakyStore {
        inner: inner.clone(),
        read_failures: Arc::new(AtomicU64::new(0)),
        wait_failures: Arc::new(AtomicU64::new(0)),
        head_failures: Arc::new(AtomicU64::new(0)),
        reads: Arc::default(),
        heads: Arc::default(),
    };
    let models = ModelStore::default();
    let mut runner =
        ProjectionRunner::new(store.clone(), models.clone(), TxScores::default()).batch_size(10);
    assert_eq!(runner.catch_up().await.expect("caught up"), last);
    let heads = store.heads.load(Ordering::SeqCst);
    assert!(
        (1..50).contains(&heads),
        "{heads} head reads for 200 batches"
    );
    assert_eq!(runner.status().head, Some(last));
    assert_eq!(runner.status().events_behind(), Some(0));

    // Caught up: a pass of one batch reads the head once, at its end.
    let next = append(&inner, "player-late", vec![scored(3)]).await;
    assert_eq!(runner.catch_up().await.expect("caught up"), next);
    assert_eq!(store.heads.load(Ordering::SeqCst), heads + 1);
    assert_eq!(runner.status().head, Some(next));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_failures_follow_the_error_policy() {
    let inner = InMemoryStore::new();
    seed(&inner, 40, 3).await;
    let store = FlakyStore {
        inner: inner.clone(),
        read_failures: Arc::new(AtomicU64::new(1)),
        wait_failures: Arc::new(AtomicU64::new(0)),
        head_failures: Arc::new(AtomicU64::new(0)),
        reads: Arc::default(),
        heads: Arc::default(),
    };

    // Stop: the read error ends the runner; the events read before it are not committed.
    let models = ModelStore::default();
    let mut runner = ProjectionRunner::new(store.clone(), models.clone(), TxScores::default());
    assert!(matches!(
        runner.catch_up().await,
        Err(ProjectionError::EventStore {
            source: esrs_core::Error::Unavailable { .. },
            ..
        })
    ));
    assert_eq!(models.checkpoint("scores"), None);

    // Retry: a failed read and a failed wait are retried, and the live runner goes on.
    store.read_failures.store(1, Ordering::SeqCst);
    store.wait_failures.store(1, Ordering::SeqCst);
    let running = ProjectionRunner::new(store.clone(), models.clone(), TxScores::default())
        .error_policy(ErrorPolicy::Retry {
            max: 2,
            backoff: Duration::from_millis(1),
        })
        .spawn();
    running.wait_caught_up().await.unwrap();
    let head = append(&inner, "late", vec![scored(4)]).await;
    running.wait_for(head).await.unwrap();
    running.stop().await.unwrap();
    assert_eq!(store.read_failures.load(Ordering::SeqCst), 0);
    assert_eq!(store.wait_failures.load(Ordering::SeqCst), 0);
    models.model().assert_each_applied_once();
    assert_eq!(models.model(), expected_model(&inner).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_requested_while_waiting_for_the_lock_is_done() {
    let store = InMemoryStore::new();
    seed(&store, 30, 3).await;
    let checkpoints = InMemoryCheckpoints::new();
    let projection = ExternalScores::default();
    let model = projection.model.clone();
    let mut first = ProjectionRunner::new(store.clone(), checkpoints.clone(), projection);
    first.catch_up().await.unwrap();
    let first = first.spawn();
    first.wait_caught_up().await.unwrap();

    let second = ExternalScores {
        model: model.clone(),
        hooks: Hooks::default(),
    };
    let calls = second.hooks.calls.clone();
    let waiting = ProjectionRunner::new(store.clone(), checkpoints.clone(), second)
        .wait_for_lock(Duration::from_millis(5))
        .spawn();
    waiting.request_rebuild();
    first.stop().await.unwrap();
    let mut status = waiting.subscribe();
    tokio::time::timeout(
        Duration::from_secs(5),
        status.wait_for(|s| s.rebuilds == 1 && s.is_caught_up()),
    )
    .await
    .expect("the rebuild is done")
    .unwrap();
    waiting.stop().await.unwrap();
    // The whole log was handled again, into an emptied read model.
    assert_eq!(calls.load(Ordering::SeqCst), 24);
    let model = model.lock().unwrap().clone();
    model.assert_each_applied_once();
    assert_eq!(model, fresh_rebuild(&store).await);
}

/// Dropping the handle leaves the runner running as before: it waits for new events
/// instead of reading the log again and again (the control channel's sender is gone, but
/// that is no request), and still handles what is appended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_handle_leaves_the_runner_following_without_spinning() {
    let inner = InMemoryStore::new();
    seed(&inner, 10, 2).await;
    let store = FlakyStore {
        inner: inner.clone(),
        read_failures: Arc::default(),
        wait_failures: Arc::default(),
        head_failures: Arc::default(),
        reads: Arc::default(),
        heads: Arc::default(),
    };
    let projection = ExternalScores::default();
    let model = projection.model.clone();
    let running = ProjectionRunner::new(store.clone(), InMemoryCheckpoints::new(), projection)
        .poll_interval(Duration::from_secs(60))
        .spawn();
    running.wait_caught_up().await.unwrap();
    let mut status = running.subscribe();
    drop(running);

    let before = store.reads.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_reads = store.reads.load(Ordering::SeqCst) - before;
    assert!(
        idle_reads <= 2,
        "{idle_reads} reads of the log in 300 ms without a new event"
    );

    let head = append(&inner, "late", vec![scored(5)]).await;
    tokio::time::timeout(
        Duration::from_secs(5),
        status.wait_for(|s| s.checkpoint >= head),
    )
    .await
    .expect("the detached runner handles a new event")
    .unwrap();
    assert_eq!(model.lock().unwrap().totals.get("late"), Some(&5));
}

/// A runner whose lock was lost stops at its next save with `LockLost`, whatever its error
/// policy: retrying could only fail again, as another runner holds the projection now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lock_stops_the_runner_without_retrying() {
    let store = InMemoryStore::new();
    seed(&store, 10, 2).await;
    let models = ModelStore::default();
    let running = ProjectionRunner::new(store.clone(), models.clone(), TxScores::default())
        .error_policy(ErrorPolicy::Retry {
            max: 1_000,
            backoff: Duration::from_secs(60),
        })
        .spawn();
    running.wait_caught_up().await.unwrap();
    let committed = models.checkpoint("scores");
    models.lock_lost.store(true, Ordering::SeqCst);
    append(&store, "late", vec![scored(3)]).await;
    let ended = tokio::time::timeout(Duration::from_secs(5), running.join())
        .await
        .expect("the runner stops at once, without waiting to retry");
    assert!(
        matches!(
            ended,
            Err(ProjectionError::Checkpoint {
                source: CheckpointError::LockLost { .. },
                ..
            })
        ),
        "{ended:?}"
    );
    assert_eq!(models.checkpoint("scores"), committed, "nothing saved");
}
