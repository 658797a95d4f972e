//! The metrics of the repository, the in-memory store and the projection runner: one append,
//! one conflict, one retry, one idempotent replay, one projection batch each move exactly
//! the metrics of `esrs_core::metrics`'s table, with its names and labels, and nothing else.
//!
//! Each test records into a recorder of its own (a thread-local default, on a current-thread
//! runtime, so that everything the test runs records into it), and sets up what it needs
//! before installing it.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use esrs_core::metrics;
use esrs_core::prelude::*;
use esrs_core::projection::{ErrorPolicy, InMemoryCheckpoints};
use esrs_core::store::{AppendRequest, NewEvent};
use esrs_core::{BoxError, RecordedEvent};
use futures_util::FutureExt;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use serde::{Deserialize, Serialize};

#[derive(Event, Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Added {
    by: u64,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Counter {
    total: u64,
}

#[aggregate(name = "counter")]
impl Counter {
    #[apply]
    fn added(&mut self, e: &Added) {
        self.total += e.by;
    }

    fn add(&self, by: u64) -> Result<Added, std::convert::Infallible> {
        Ok(Added { by })
    }
}

/// The same events, folded by an aggregate that snapshots every 2 events.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Snapped {
    total: u64,
}

#[aggregate(name = "snapped", snapshot_every = 2, event_enum = SnappedEvent)]
impl Snapped {
    #[apply]
    fn added(&mut self, e: &Added) {
        self.total += e.by;
    }

    fn add(&self, by: u64) -> Result<Added, std::convert::Infallible> {
        Ok(Added { by })
    }
}

/// Runs `test` on a current-thread runtime with a fresh debugging recorder as the thread's
/// default, and returns what was recorded.
fn recording<F: Future<Output = ()>>(test: F) -> BTreeMap<String, String> {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    {
        let _recorder = ::metrics::set_default_local_recorder(&recorder);
        runtime.block_on(test);
    }
    recorded(&snapshotter)
}

/// What a recorder holds, one entry per metric and label set, as `name{label=value,…}` →
/// `counter N`, `gauge X`, or `histogram ×N` (the number of values recorded).
fn recorded(snapshotter: &Snapshotter) -> BTreeMap<String, String> {
    summary(&values(snapshotter))
}

/// `values` as [`recorded`] shows them.
fn summary(values: &BTreeMap<String, DebugValue>) -> BTreeMap<String, String> {
    values
        .iter()
        .map(|(key, value)| {
            let value = match value {
                DebugValue::Counter(n) => format!("counter {n}"),
                DebugValue::Gauge(x) => format!("gauge {}", x.into_inner()),
                DebugValue::Histogram(v) => format!("histogram ×{}", v.len()),
            };
            (key.clone(), value)
        })
        .collect()
}

/// The values of a recorder's metrics by `name{label=value,…}`. A snapshot drains the
/// histograms: take one per test.
fn values(snapshotter: &Snapshotter) -> BTreeMap<String, DebugValue> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            (format!("{}{{{}}}", key.name(), labels.join(",")), value)
        })
        .collect()
}

fn expect(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
    entries
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn id(name: &str) -> StreamId {
    StreamId::new(name).unwrap()
}

/// An append to `stream` made by another writer, on a thread without the test's recorder.
fn rival(store: &InMemoryStore, stream: &str) {
    let store = store.clone();
    let stream = id(stream);
    std::thread::spawn(move || {
        let event = NewEvent::encode(&CounterEvent::from(Added { by: 100 })).unwrap();
        store
            .append(AppendRequest::new(
                stream,
                ExpectedVersion::Any,
                vec![event],
            ))
            .now_or_never()
            .expect("the in-memory store answers at once")
            .expect("the rival appends");
    })
    .join()
    .unwrap();
}

#[test]
fn the_metric_names_are_those_of_the_table() {
    let names: Vec<_> = metrics::names().collect();
    assert_eq!(names.len(), 19);
    assert!(names.iter().all(|n| n.starts_with("esrs_")));
    assert!(
        names
            .iter()
            .filter(|n| !n.ends_with("_total"))
            .all(|n| !n.contains("total")),
        "only counters end in _total"
    );
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "no name twice");
    let rows = include_str!("../src/metrics.rs")
        .lines()
        .filter(|l| l.starts_with("//! | `esrs_"))
        .count();
    assert_eq!(rows, names.len(), "one row per metric");
    for name in names {
        assert!(
            include_str!("../src/metrics.rs").contains(&format!("//! | `{name}` |")),
            "{name} has its row in the table"
        );
    }
}

#[test]
fn one_append_records_its_duration_events_and_payload_and_one_load() {
    let store = InMemoryStore::new();
    let repo = Repository::<Counter, _>::new(store.clone());
    let seen = recording(async {
        repo.execute(&id("a"), |c| c.add(7)).await.unwrap();
    });
    assert_eq!(
        seen,
        expect(&[
            (
                "esrs_append_duration_seconds{outcome=appended,store=memory}",
                "histogram ×1"
            ),
            ("esrs_append_events{store=memory}", "histogram ×1"),
            (
                "esrs_load_duration_seconds{aggregate=counter,snapshot=none}",
                "histogram ×1"
            ),
            ("esrs_payload_bytes{store=memory}", "histogram ×1"),
        ])
    );

    // The values: one event, of the payload's size.
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    {
        let _recorder = ::metrics::set_default_local_recorder(&recorder);
        runtime.block_on(async {
            let two = vec![
                NewEvent::encode(&CounterEvent::from(Added { by: 1 })).unwrap(),
                NewEvent::encode(&CounterEvent::from(Added { by: 22 })).unwrap(),
            ];
            store
                .append(AppendRequest::new(id("b"), ExpectedVersion::NoStream, two))
                .await
                .unwrap();
        });
    }
    let values = values(&snapshotter);
    let floats = |key: &str| match &values[key] {
        DebugValue::Histogram(v) => v.iter().map(|x| x.into_inner()).collect::<Vec<_>>(),
        other => panic!("{key} is not a histogram: {other:?}"),
    };
    assert_eq!(floats("esrs_append_events{store=memory}"), [2.0]);
    assert_eq!(
        floats("esrs_payload_bytes{store=memory}"),
        [r#"{"by":1}"#.len() as f64, r#"{"by":22}"#.len() as f64]
    );
}

#[test]
fn one_conflict_records_the_refused_append_and_the_conflict() {
    let store = InMemoryStore::new();
    let repo = Repository::<Counter, _>::new(store.clone());
    let seen = recording(async {
        let error = repo
            .execute(&id("c"), |c| {
                rival(&store, "counter-c");
                c.add(1)
            })
            .await
            .unwrap_err();
        assert!(error.is_conflict());
    });
    assert_eq!(
        seen,
        expect(&[
            (
                "esrs_append_duration_seconds{outcome=conflict,store=memory}",
                "histogram ×1"
            ),
            ("esrs_conflicts_total{aggregate=counter}", "counter 1"),
            (
                "esrs_load_duration_seconds{aggregate=counter,snapshot=none}",
                "histogram ×1"
            ),
        ])
    );
}

#[test]
fn one_retry_records_the_conflict_the_retry_and_both_attempts() {
    let store = InMemoryStore::new();
    let repo = Repository::<Counter, _>::new(store.clone());
    let raced = AtomicBool::new(false);
    let seen = recording(async {
        let done = repo
            .execute(&id("r"), |c| {
                if !raced.swap(true, Ordering::SeqCst) {
                    rival(&store, "counter-r");
                }
                c.add(1)
            })
            .retries(1)
            .await
            .unwrap();
        assert_eq!((done.state.total, done.version()), (101, 2));
    });
    assert_eq!(
        seen,
        expect(&[
            (
                "esrs_append_duration_seconds{outcome=appended,store=memory}",
                "histogram ×1"
            ),
            (
                "esrs_append_duration_seconds{outcome=conflict,store=memory}",
                "histogram ×1"
            ),
            ("esrs_append_events{store=memory}", "histogram ×1"),
            ("esrs_command_retries_total{aggregate=counter}", "counter 1"),
            ("esrs_conflicts_total{aggregate=counter}", "counter 1"),
            (
                "esrs_load_duration_seconds{aggregate=counter,snapshot=none}",
                "histogram ×2"
            ),
            ("esrs_payload_bytes{store=memory}", "histogram ×1"),
        ])
    );
}

#[test]
fn one_idempotent_replay_records_the_replay_and_nothing_written() {
    let store = InMemoryStore::new();
    let repo = Repository::<Counter, _>::new(store.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        repo.execute(&id("k"), |c| c.add(5))
            .idempotency_key(IdempotencyKey::new("request-1").unwrap())
            .await
            .unwrap();
    });
    let seen = recording(async {
        let again = repo
            .execute(&id("k"), |c| c.add(5))
            .idempotency_key(IdempotencyKey::new("request-1").unwrap())
            .await
            .unwrap();
        assert!(again.outcome.deduplicated);
    });
    assert_eq!(
        seen,
        expect(&[(
            "esrs_idempotent_replays_total{aggregate=counter}",
            "counter 1"
        )])
    );

    // A raw append with a known key is deduplicated by the store.
    let seen = recording(async {
        let event = NewEvent::encode(&CounterEvent::from(Added { by: 5 })).unwrap();
        let outcome = store
            .append(
                AppendRequest::new(id("raw"), ExpectedVersion::Any, vec![event.clone()])
                    .idempotency_key(IdempotencyKey::new("raw-1").unwrap()),
            )
            .await
            .unwrap();
        assert!(!outcome.deduplicated);
        let outcome = store
            .append(
                AppendRequest::new(id("raw"), ExpectedVersion::Any, vec![event])
                    .idempotency_key(IdempotencyKey::new("raw-1").unwrap()),
            )
            .await
            .unwrap();
        assert!(outcome.deduplicated);
    });
    assert_eq!(
        seen,
        expect(&[
            (
                "esrs_append_duration_seconds{outcome=appended,store=memory}",
                "histogram ×1"
            ),
            (
                "esrs_append_duration_seconds{outcome=deduplicated,store=memory}",
                "histogram ×1"
            ),
            ("esrs_append_events{store=memory}", "histogram ×1"),
            ("esrs_payload_bytes{store=memory}", "histogram ×1"),
        ])
    );
}

#[test]
fn snapshots_saved_used_and_missing_are_counted() {
    let store = InMemoryStore::new();
    let repo = Repository::<Snapped, _>::new(store.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        repo.execute(&id("s"), |c| c.add(1)).await.unwrap();
    });
    // The second event reaches `snapshot_every`: the command saves a snapshot.
    let seen = recording(async {
        repo.execute(&id("s"), |c| c.add(1)).await.unwrap();
    });
    assert_eq!(
        seen["esrs_snapshot_saves_total{aggregate=snapped}"],
        "counter 1"
    );
    assert_eq!(
        seen["esrs_load_duration_seconds{aggregate=snapped,snapshot=miss}"], "histogram ×1",
        "a stream shorter than snapshot_every has no snapshot yet"
    );
    assert!(
        !seen
            .keys()
            .any(|k| k.starts_with("esrs_snapshot_misses_total")),
        "{seen:?}"
    );

    let seen = recording(async {
        assert_eq!(repo.load(&id("s")).await.unwrap().total, 2);
    });
    assert_eq!(
        seen,
        expect(&[(
            "esrs_load_duration_seconds{aggregate=snapped,snapshot=hit}",
            "histogram ×1"
        )])
    );

    store.clear_snapshots();
    let seen = recording(async {
        assert_eq!(repo.load(&id("s")).await.unwrap().total, 2);
    });
    assert_eq!(
        seen,
        expect(&[
            (
                "esrs_load_duration_seconds{aggregate=snapped,snapshot=miss}",
                "histogram ×1"
            ),
            (
                "esrs_snapshot_misses_total{aggregate=snapped,reason=absent}",
                "counter 1"
            ),
        ])
    );
}

#[test]
fn the_cache_counts_hits_misses_and_stale_states() {
    let store = InMemoryStore::new();
    let repo = Repository::<Counter, _>::new(store.clone()).with_cache(10);
    let seen = recording(async {
        repo.execute(&id("h"), |c| c.add(1)).await.unwrap();
        repo.execute(&id("h"), |c| c.add(1)).await.unwrap();
    });
    assert_eq!(
        seen["esrs_cache_total{aggregate=counter,result=miss}"],
        "counter 1"
    );
    assert_eq!(
        seen["esrs_cache_total{aggregate=counter,result=hit}"],
        "counter 1"
    );

    // Another writer appends: the cached state is stale, the append conflicts, the command
    // reloads and runs again, without a retry.
    rival(&store, "counter-h");
    let seen = recording(async {
        let done = repo.execute(&id("h"), |c| c.add(1)).await.unwrap();
        assert_eq!(done.version(), 4);
    });
    assert_eq!(
        seen["esrs_cache_total{aggregate=counter,result=hit}"],
        "counter 1"
    );
    assert_eq!(
        seen["esrs_cache_total{aggregate=counter,result=stale}"],
        "counter 1"
    );
    assert_eq!(seen["esrs_conflicts_total{aggregate=counter}"], "counter 1");
    assert!(!seen.contains_key("esrs_command_retries_total{aggregate=counter}"));
}

/// Counts the events it handles; fails its first batch when asked to.
#[derive(Debug, Default)]
struct Tally {
    handled: u64,
    fail_once: bool,
}

impl Projection for Tally {
    type Event = serde_json::Value;
    fn name(&self) -> &str {
        "tally"
    }
    fn handles(&self, name: &str) -> bool {
        name == "Added"
    }
    async fn handle(
        &mut self,
        _: &mut (),
        _: serde_json::Value,
        _: &RecordedEvent,
    ) -> Result<(), BoxError> {
        if std::mem::take(&mut self.fail_once) {
            return Err("the read model is unavailable".into());
        }
        self.handled += 1;
        Ok(())
    }
}

fn seed(store: &InMemoryStore) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let events = vec![
            NewEvent::encode(&CounterEvent::from(Added { by: 1 })).unwrap(),
            NewEvent::encode(&CounterEvent::from(Added { by: 2 })).unwrap(),
            NewEvent::new(
                "Ignored",
                1,
                serde_json::value::to_raw_value(&serde_json::json!({})).unwrap(),
            ),
        ];
        store
            .append(AppendRequest::new(
                id("p"),
                ExpectedVersion::NoStream,
                events,
            ))
            .await
            .unwrap();
    });
}

#[test]
fn one_projection_batch_records_its_events_duration_checkpoint_lag_and_lock() {
    let store = InMemoryStore::new();
    seed(&store);
    let mut runner = ProjectionRunner::new(store, InMemoryCheckpoints::new(), Tally::default());
    let seen = recording(async {
        runner.catch_up().await.unwrap();
    });
    assert_eq!(runner.projection().handled, 2);
    assert_eq!(
        seen,
        expect(&[
            (
                "esrs_projection_batch_duration_seconds{projection=tally}",
                "histogram ×1"
            ),
            (
                "esrs_projection_checkpoint_position{projection=tally}",
                "gauge 3"
            ),
            (
                "esrs_projection_events_total{projection=tally,result=handled}",
                "counter 2"
            ),
            (
                "esrs_projection_events_total{projection=tally,result=skipped}",
                "counter 1"
            ),
            ("esrs_projection_lag_events{projection=tally}", "gauge 0"),
            ("esrs_projection_lag_seconds{projection=tally}", "gauge 0"),
            ("esrs_projection_lock_held{projection=tally}", "gauge 0"),
        ])
    );
}

#[test]
fn a_failed_batch_is_counted_by_what_the_policy_did() {
    let store = InMemoryStore::new();
    seed(&store);
    let tally = Tally {
        fail_once: true,
        ..Tally::default()
    };
    let mut runner = ProjectionRunner::new(store.clone(), InMemoryCheckpoints::new(), tally)
        .error_policy(ErrorPolicy::Retry {
            max: 1,
            backoff: Duration::from_millis(1),
        });
    let seen = recording(async {
        runner.catch_up().await.unwrap();
    });
    assert_eq!(runner.projection().handled, 2);
    assert_eq!(
        seen["esrs_projection_errors_total{policy=retry,projection=tally}"],
        "counter 1"
    );
    assert_eq!(
        seen["esrs_projection_batch_duration_seconds{projection=tally}"], "histogram ×1",
        "only the committed batch is timed"
    );

    let tally = Tally {
        fail_once: true,
        ..Tally::default()
    };
    let mut runner = ProjectionRunner::new(store, InMemoryCheckpoints::new(), tally);
    let seen = recording(async {
        runner.catch_up().await.unwrap_err();
    });
    assert_eq!(
        seen,
        expect(&[
            (
                "esrs_projection_errors_total{policy=stop,projection=tally}",
                "counter 1"
            ),
            ("esrs_projection_lock_held{projection=tally}", "gauge 0"),
        ])
    );
}
