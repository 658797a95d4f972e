//! Sharded projections over the in-memory store: every event applied once, by the shard of
//! its stream, in stream order; shards shared by several runners, taken over when one goes;
//! and changes of the number of shards that lose nothing and apply nothing twice.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use esrs_core::projection::{
    InMemoryCheckpoints, LogFilter, ProjectionError, Shard, ShardedRunner, shard_name,
};
use esrs_core::store::{AppendRequest, NewEvent};
use esrs_core::{
    BoxError, EventStore, ExpectedVersion, InMemoryStore, Position, Projection, ProjectionRunner,
    RecordedEvent, StreamId,
};

/// What the shards applied: each (stream, version) with how many times, and the order.
#[derive(Debug, Default, Clone, PartialEq)]
struct Model {
    applied: BTreeMap<(String, u64), u32>,
    /// Per stream, the versions in the order they were applied.
    order: BTreeMap<String, Vec<u64>>,
}

impl Model {
    fn assert_exactly_once_in_order(&self) {
        for (key, times) in &self.applied {
            assert_eq!(*times, 1, "{key:?} applied {times} times");
        }
        for (stream, versions) in &self.order {
            assert!(
                versions.windows(2).all(|w| w[0] < w[1]),
                "stream {stream} applied out of order: {versions:?}"
            );
        }
    }
}

type Shared = Arc<Mutex<Model>>;

/// Records every `Tick`, checking that it belongs to its shard.
struct Ticks {
    shard: Shard,
    model: Shared,
}

impl Projection for Ticks {
    type Event = serde_json::Value;
    fn name(&self) -> &str {
        "ticks"
    }
    fn filter(&self) -> LogFilter {
        LogFilter::names(["Tick"])
    }
    async fn handle(
        &mut self,
        _: &mut (),
        _: serde_json::Value,
        envelope: &RecordedEvent,
    ) -> Result<(), BoxError> {
        assert!(
            self.shard.contains(&envelope.stream),
            "{} read by shard {}",
            envelope.stream,
            self.shard
        );
        let mut model = self.model.lock().unwrap();
        let stream = envelope.stream.as_str().to_owned();
        *model
            .applied
            .entry((stream.clone(), envelope.version))
            .or_default() += 1;
        model
            .order
            .entry(stream)
            .or_default()
            .push(envelope.version);
        Ok(())
    }
    async fn reset(&mut self, _: &mut ()) -> Result<(), BoxError> {
        let shard = self.shard;
        let mut model = self.model.lock().unwrap();
        model.applied.retain(|(stream, _), _| {
            !shard.contains(&StreamId::new(stream.as_str()).expect("a stream id"))
        });
        model.order.retain(|stream, _| {
            !shard.contains(&StreamId::new(stream.as_str()).expect("a stream id"))
        });
        Ok(())
    }
}

/// Appends `n` events over 40 streams, every fourth one a `Noise` the projection does not
/// read; returns the last position.
async fn seed(store: &InMemoryStore, from: usize, n: usize) -> Position {
    let mut last = Position::START;
    for i in from..from + n {
        let name = if i % 4 == 3 { "Noise" } else { "Tick" };
        let payload = serde_json::value::to_raw_value(&serde_json::json!({ "i": i })).unwrap();
        let outcome = store
            .append(AppendRequest::new(
                StreamId::new(format!("stream-{}", i % 40)).unwrap(),
                ExpectedVersion::Any,
                vec![NewEvent::new(name, 1, payload)],
            ))
            .await
            .unwrap();
        last = outcome.last_position.unwrap();
    }
    last
}

/// The model of one unsharded projection over the whole log.
async fn unsharded(store: &InMemoryStore) -> Model {
    let model = Shared::default();
    let projection = Ticks {
        shard: Shard::new(0, 1).unwrap(),
        model: model.clone(),
    };
    let mut runner = ProjectionRunner::new(store.clone(), InMemoryCheckpoints::new(), projection);
    runner.catch_up().await.unwrap();
    model_of(&model)
}

fn sharded(
    store: &InMemoryStore,
    checkpoints: &InMemoryCheckpoints,
    count: u32,
    model: &Shared,
) -> ShardedRunner<InMemoryStore, InMemoryCheckpoints, Ticks> {
    let model = model.clone();
    ShardedRunner::new(store.clone(), checkpoints.clone(), count, move |shard| {
        Ticks {
            shard,
            model: model.clone(),
        }
    })
    .configure(|runner| {
        runner
            .batch_size(16)
            .poll_interval(Duration::from_millis(20))
    })
    .takeover_interval(Duration::from_millis(20))
}

fn model_of(model: &Shared) -> Model {
    model.lock().unwrap().clone()
}

#[tokio::test]
async fn shards_split_the_log_each_event_once_in_stream_order() {
    let store = InMemoryStore::new();
    let head = seed(&store, 0, 600).await;
    let checkpoints = InMemoryCheckpoints::new();
    let model = Shared::default();
    let positions = sharded(&store, &checkpoints, 4, &model)
        .catch_up()
        .await
        .unwrap();
    assert_eq!(positions, vec![head; 4], "every shard gets through the log");
    let got = model_of(&model);
    got.assert_exactly_once_in_order();
    assert_eq!(got.applied.len(), 450);
    assert_eq!(got, unsharded(&store).await);
    for index in 0..4 {
        let name = shard_name("ticks", Shard::new(index, 4).unwrap());
        assert_eq!(name, format!("ticks#{index}/4"));
        assert_eq!(checkpoints.get(&name), Some(head));
    }

    // A rebuild equals the incremental result.
    let rebuilt = sharded(&store, &checkpoints, 4, &model)
        .rebuild()
        .await
        .unwrap();
    assert_eq!(rebuilt, vec![head; 4]);
    assert_eq!(model_of(&model), got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runners_share_the_shards_and_take_over_those_of_one_that_goes() {
    let store = InMemoryStore::new();
    seed(&store, 0, 200).await;
    let checkpoints = InMemoryCheckpoints::new();
    let model = Shared::default();
    let first = sharded(&store, &checkpoints, 4, &model)
        .max_owned(2)
        .spawn();
    let second = sharded(&store, &checkpoints, 4, &model)
        .max_owned(2)
        .spawn();
    let third = sharded(&store, &checkpoints, 4, &model)
        .max_owned(2)
        .spawn();
    let owned = |runs: &[&esrs_core::projection::RunningShards<Ticks>]| {
        runs.iter().map(|r| r.owned().len()).collect::<Vec<_>>()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while owned(&[&first, &second, &third]).iter().sum::<usize>() < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the shards are taken"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let counts = owned(&[&first, &second, &third]);
    assert!(
        counts.iter().all(|&c| c <= 2),
        "no runner runs more than it may: {counts:?}"
    );

    // Events appended while the shards run; then a runner that owns shards goes, and the
    // others, which have room for them, take its shards over.
    let head = seed(&store, 200, 200).await;
    let mut runs = vec![first, second, third];
    let going = runs.iter().position(|r| !r.owned().is_empty()).unwrap();
    runs.remove(going).abort().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while runs.iter().map(|r| r.owned().len()).sum::<usize>() < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the others take the shards over"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for run in runs {
        assert!(run.wait_for_owned(head, Duration::from_secs(10)).await);
        run.stop().await.unwrap();
    }

    // The in-memory checkpoints are at-least-once: an aborted runner's uncommitted batch is
    // delivered again. Every event is applied, and the result equals a rebuild.
    let got = model_of(&model);
    let expected = unsharded(&store).await;
    assert_eq!(
        got.applied.keys().collect::<Vec<_>>(),
        expected.applied.keys().collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_reshard_moves_to_a_new_count_without_losing_or_repeating_an_event() {
    let store = InMemoryStore::new();
    let checkpoints = InMemoryCheckpoints::new();
    let model = Shared::default();
    let model_two = model.clone();
    // The two old shards stop at different places: shard 0 at 300 events, shard 1 at 500.
    seed(&store, 0, 300).await;
    let shard = |index| Shard::new(index, 2).unwrap();
    let mut runner = ProjectionRunner::new(
        store.clone(),
        checkpoints.clone(),
        Ticks {
            shard: shard(0),
            model: model_two.clone(),
        },
    )
    .shard(shard(0));
    runner.catch_up().await.unwrap();
    let farthest = seed(&store, 300, 200).await;
    let mut runner = ProjectionRunner::new(
        store.clone(),
        checkpoints.clone(),
        Ticks {
            shard: shard(1),
            model: model_two.clone(),
        },
    )
    .shard(shard(1));
    assert_eq!(runner.catch_up().await.unwrap(), farthest);
    // Events after the last checkpoint, which the new shards must apply.
    let head = seed(&store, 500, 100).await;

    let three = sharded(&store, &checkpoints, 3, &model);
    assert_eq!(three.reshard(2).await.unwrap(), farthest);
    for index in 0..3 {
        let name = shard_name("ticks", Shard::new(index, 3).unwrap());
        assert_eq!(checkpoints.get(&name), Some(farthest));
    }
    // Run again, it changes nothing.
    assert_eq!(three.reshard(2).await.unwrap(), farthest);
    assert_eq!(three.catch_up().await.unwrap(), vec![head; 3]);
    let got = model_of(&model);
    got.assert_exactly_once_in_order();
    assert_eq!(got, unsharded(&store).await);

    // Once the new layout has moved on, a reshard to it from another position is refused.
    seed(&store, 600, 10).await;
    three.catch_up().await.unwrap();
    let error = three.reshard(1).await.unwrap_err();
    assert!(
        matches!(&error, ProjectionError::ShardLayout { projection, .. } if projection == "ticks#0/3"),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("already has a checkpoint"),
        "{error}"
    );
}

#[tokio::test]
async fn a_reshard_is_refused_while_a_shard_runs() {
    let store = InMemoryStore::new();
    seed(&store, 0, 50).await;
    let checkpoints = InMemoryCheckpoints::new();
    let model = Shared::default();
    let running = sharded(&store, &checkpoints, 2, &model).spawn();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while running.owned().len() < 2 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let error = sharded(&store, &checkpoints, 4, &model)
        .reshard(2)
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProjectionError::AlreadyRunning { .. }),
        "{error:?}"
    );
    running.stop().await.unwrap();
}
