//! The metrics, the warning of slow appends and the health gauges of the PostgreSQL store:
//! one append, one conflict, one retry, one idempotent replay and one projection batch move
//! exactly the metrics of `esrs_core::metrics`'s table, with its names and labels; an append
//! held up by a lock logs the warning; `sample_health` sees an open writing transaction.
//!
//! Each test runs on a current-thread runtime with a debugging recorder as the thread's
//! default while it measures, so that everything it runs records there; what another writer
//! does, it does on a thread of its own, unrecorded.

mod common;

use std::collections::BTreeMap;
use std::future::{Future, IntoFuture};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{TestStore, fresh_store};
use esrs_core::prelude::*;
use esrs_core::store::{AppendRequest, NewEvent};
use esrs_core::{BoxError, RecordedEvent};
use esrs_postgres::sqlx::{self, Connection};
use esrs_postgres::{PgCheckpoints, PgStoreOptions, PgTransaction};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use serde::{Deserialize, Serialize};
use tracing_subscriber::layer::SubscriberExt;

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

/// Runs `test` on a current-thread runtime.
fn run<F: Future>(test: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(test)
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

/// An append to `stream` of the store in `schema`, made by another writer: another store,
/// on a thread and runtime of its own, without the test's recorder.
fn rival(schema: &str, stream: &str) {
    let (schema, stream) = (schema.to_owned(), id(stream));
    std::thread::spawn(move || {
        run(async move {
            let store = PgStoreOptions::new()
                .schema(schema)
                .build(common::pool(1).await)
                .unwrap();
            let event = NewEvent::encode(&CounterEvent::from(Added { by: 100 })).unwrap();
            store
                .append(AppendRequest::new(
                    stream,
                    ExpectedVersion::Any,
                    vec![event],
                ))
                .await
                .expect("the rival appends");
            store.pool().close().await;
        })
    })
    .join()
    .unwrap();
}

#[test]
fn one_append_records_its_duration_events_and_payload_and_one_load() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    run(async {
        let store = fresh_store().await;
        let repo = Repository::<Counter, _>::new(store.store.clone());
        let _recording = metrics::set_default_local_recorder(&recorder);
        repo.execute(&id("a"), |c| c.add(7)).await.unwrap();
    });
    let values = values(&snapshotter);
    assert_eq!(
        summary(&values),
        expect(&[
            (
                "esrs_append_duration_seconds{outcome=appended,store=postgres}",
                "histogram ×1"
            ),
            ("esrs_append_events{store=postgres}", "histogram ×1"),
            (
                "esrs_load_duration_seconds{aggregate=counter,snapshot=none}",
                "histogram ×1"
            ),
            ("esrs_payload_bytes{store=postgres}", "histogram ×1"),
        ])
    );
    let floats = |key: &str| match &values[key] {
        DebugValue::Histogram(v) => v.iter().map(|x| x.into_inner()).collect::<Vec<_>>(),
        other => panic!("{key} is not a histogram: {other:?}"),
    };
    assert_eq!(floats("esrs_append_events{store=postgres}"), [1.0]);
    assert_eq!(
        floats("esrs_payload_bytes{store=postgres}"),
        [r#"{"by":7}"#.len() as f64]
    );
}

#[test]
fn one_conflict_records_the_refused_append_and_the_conflict() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    run(async {
        let store = fresh_store().await;
        let schema = store.schema().to_owned();
        let repo = Repository::<Counter, _>::new(store.store.clone());
        let _recording = metrics::set_default_local_recorder(&recorder);
        let error = repo
            .execute(&id("c"), |c| {
                rival(&schema, "counter-c");
                c.add(1)
            })
            .await
            .unwrap_err();
        assert!(error.is_conflict());
    });
    assert_eq!(
        recorded(&snapshotter),
        expect(&[
            (
                "esrs_append_duration_seconds{outcome=conflict,store=postgres}",
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
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    run(async {
        let store = fresh_store().await;
        let schema = store.schema().to_owned();
        let repo = Repository::<Counter, _>::new(store.store.clone());
        let raced = AtomicBool::new(false);
        let _recording = metrics::set_default_local_recorder(&recorder);
        let done = repo
            .execute(&id("r"), |c| {
                if !raced.swap(true, Ordering::SeqCst) {
                    rival(&schema, "counter-r");
                }
                c.add(1)
            })
            .retries(1)
            .await
            .unwrap();
        assert_eq!((done.state.total, done.version()), (101, 2));
    });
    assert_eq!(
        recorded(&snapshotter),
        expect(&[
            (
                "esrs_append_duration_seconds{outcome=appended,store=postgres}",
                "histogram ×1"
            ),
            (
                "esrs_append_duration_seconds{outcome=conflict,store=postgres}",
                "histogram ×1"
            ),
            ("esrs_append_events{store=postgres}", "histogram ×1"),
            ("esrs_command_retries_total{aggregate=counter}", "counter 1"),
            ("esrs_conflicts_total{aggregate=counter}", "counter 1"),
            (
                "esrs_load_duration_seconds{aggregate=counter,snapshot=none}",
                "histogram ×2"
            ),
            ("esrs_payload_bytes{store=postgres}", "histogram ×1"),
        ])
    );
}

#[test]
fn one_idempotent_replay_records_the_replay_and_nothing_written() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let deduplicated = DebuggingRecorder::new();
    let deduplicated_snapshotter = deduplicated.snapshotter();
    run(async {
        let store = fresh_store().await;
        let repo = Repository::<Counter, _>::new(store.store.clone());
        let key = || IdempotencyKey::new("request-1").unwrap();
        repo.execute(&id("k"), |c| c.add(5))
            .idempotency_key(key())
            .await
            .unwrap();
        {
            let _recording = metrics::set_default_local_recorder(&recorder);
            let again = repo
                .execute(&id("k"), |c| c.add(5))
                .idempotency_key(key())
                .await
                .unwrap();
            assert!(again.outcome.deduplicated);
        }
        // A raw append with a known key is deduplicated by the store.
        let event = NewEvent::encode(&CounterEvent::from(Added { by: 5 })).unwrap();
        let request = || {
            AppendRequest::new(id("raw"), ExpectedVersion::Any, vec![event.clone()])
                .idempotency_key(IdempotencyKey::new("raw-1").unwrap())
        };
        store.append(request()).await.unwrap();
        let _recording = metrics::set_default_local_recorder(&deduplicated);
        assert!(store.append(request()).await.unwrap().deduplicated);
    });
    assert_eq!(
        recorded(&snapshotter),
        expect(&[(
            "esrs_idempotent_replays_total{aggregate=counter}",
            "counter 1"
        )])
    );
    assert_eq!(
        recorded(&deduplicated_snapshotter),
        expect(&[(
            "esrs_append_duration_seconds{outcome=deduplicated,store=postgres}",
            "histogram ×1"
        )])
    );
}

/// Counts the events it handles, in no table.
#[derive(Debug, Default)]
struct Tally {
    handled: u64,
}

impl Projection<PgTransaction> for Tally {
    type Event = serde_json::Value;
    fn name(&self) -> &str {
        "tally"
    }
    async fn handle(
        &mut self,
        _: &mut PgTransaction,
        _: serde_json::Value,
        _: &RecordedEvent,
    ) -> Result<(), BoxError> {
        self.handled += 1;
        Ok(())
    }
}

#[test]
fn one_projection_batch_records_its_events_duration_checkpoint_lag_and_lock() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let last = run(async {
        let store = fresh_store().await;
        let events = (1..=3)
            .map(|by| NewEvent::encode(&CounterEvent::from(Added { by })).unwrap())
            .collect();
        let outcome = store
            .append(AppendRequest::new(
                id("p"),
                ExpectedVersion::NoStream,
                events,
            ))
            .await
            .unwrap();
        let last = outcome.last_position.unwrap();
        let mut runner = ProjectionRunner::new(
            store.store.clone(),
            PgCheckpoints::new(&store),
            Tally::default(),
        );
        let _recording = metrics::set_default_local_recorder(&recorder);
        // A transaction of another test of the cluster may hold the log back for a moment:
        // read until the events are all handled.
        let mut passes = 0;
        while runner.catch_up().await.unwrap() < last {
            passes += 1;
            assert!(passes < 20, "the log stays held back");
        }
        assert_eq!(runner.projection().handled, 3);
        last
    });
    let mut seen = recorded(&snapshotter);
    let batches = seen
        .remove("esrs_projection_batch_duration_seconds{projection=tally}")
        .expect("the batch is timed");
    assert_eq!(
        batches, "histogram ×1",
        "three events in one append are one batch"
    );
    assert_eq!(
        seen,
        expect(&[
            (
                "esrs_projection_checkpoint_position{projection=tally}",
                &format!("gauge {}", last.sequence)
            ),
            (
                "esrs_projection_events_total{projection=tally,result=handled}",
                "counter 3"
            ),
            ("esrs_projection_lag_events{projection=tally}", "gauge 0"),
            ("esrs_projection_lag_seconds{projection=tally}", "gauge 0"),
            ("esrs_projection_lock_held{projection=tally}", "gauge 0"),
        ])
    );
}

/// A span's or an event's fields, by name.
type Fields = BTreeMap<String, String>;

/// The warnings logged while it is the thread's subscriber, each as its fields.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<Fields>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Warnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if *event.metadata().level() != tracing::Level::WARN {
            return;
        }
        struct Collect(Fields);
        impl tracing::field::Visit for Collect {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.insert(field.name().to_owned(), format!("{value:?}"));
            }
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                self.0.insert(field.name().to_owned(), value.to_owned());
            }
        }
        let mut fields = Collect(Fields::new());
        event.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
}

/// An append held up ~120 ms by a lock on the events table (which its `INSERT` needs) logs
/// the slow-append warning, with the stream, the batch size and the time; a second slow one
/// within the second is not logged but counted in the next warning.
#[test]
fn an_append_held_up_by_a_lock_logs_the_slow_append_warning_rate_limited() {
    let warnings = Warnings::default();
    let subscriber = tracing_subscriber::registry().with(warnings.clone());
    let _subscriber = tracing::subscriber::set_default(subscriber);
    run(async {
        let store = fresh_store().await;
        let repo = Repository::<Counter, _>::new(store.store.clone());
        let hold = |ms| {
            let sql = format!("LOCK TABLE {}.events IN EXCLUSIVE MODE", store.schema());
            async move {
                let mut tx = common::pool(1).await.begin().await.unwrap();
                sqlx::query(&sql).execute(&mut *tx).await.unwrap();
                (tx, Duration::from_millis(ms))
            }
        };
        let blocked = |stream: &'static str| {
            let repo = &repo;
            let hold = &hold;
            async move {
                let (tx, held) = hold(120).await;
                let release = async move {
                    tokio::time::sleep(held).await;
                    tx.commit().await.unwrap();
                };
                let (done, ()) = tokio::join!(
                    repo.execute(&id(stream), |c| c.add(1)).into_future(),
                    release
                );
                done.unwrap();
            }
        };
        blocked("slow").await;
        blocked("slower").await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        blocked("slowest").await;
    });
    let logged = warnings.0.lock().unwrap().clone();
    assert_eq!(
        logged.len(),
        2,
        "one warning per second at most: {logged:?}"
    );
    for (warning, (stream, suppressed)) in logged
        .iter()
        .zip([("counter-slow", "0"), ("counter-slowest", "1")])
    {
        assert_eq!(warning["stream"], stream);
        assert_eq!(warning["events"], "1");
        assert_eq!(warning["suppressed"], suppressed);
        assert_eq!(warning["threshold_ms"], "50");
        let elapsed: u64 = warning["elapsed_ms"].parse().unwrap();
        assert!(elapsed >= 100, "held ~120 ms, took {elapsed} ms");
        assert!(warning["message"].starts_with("slow append"));
    }
}

#[test]
fn a_zero_threshold_turns_the_warning_off() {
    let warnings = Warnings::default();
    let subscriber = tracing_subscriber::registry().with(warnings.clone());
    let _subscriber = tracing::subscriber::set_default(subscriber);
    run(async {
        let store = common::fresh_store_with(|o| o.slow_append_threshold(Duration::ZERO)).await;
        let mut conn = sqlx::PgConnection::connect_with(&common::connect_options())
            .await
            .unwrap();
        let mut tx = conn.begin().await.unwrap();
        sqlx::query(&format!(
            "LOCK TABLE {}.events IN EXCLUSIVE MODE",
            store.schema()
        ))
        .execute(&mut *tx)
        .await
        .unwrap();
        let release = async move {
            tokio::time::sleep(Duration::from_millis(120)).await;
            tx.commit().await.unwrap();
        };
        let repo = Repository::<Counter, _>::new(store.store.clone());
        let (done, ()) = tokio::join!(
            repo.execute(&id("off"), |c| c.add(1)).into_future(),
            release
        );
        done.unwrap();
    });
    assert!(warnings.0.lock().unwrap().is_empty());
}

/// `sample_health` sees a transaction that has written and stays open, and sets the gauges
/// to what it returns.
#[test]
fn sample_health_sees_an_open_writing_transaction_and_sets_the_gauges() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let health = run(async {
        let store: TestStore = fresh_store().await;
        let mut conn = sqlx::PgConnection::connect_with(&common::connect_options())
            .await
            .unwrap();
        let mut tx = conn.begin().await.unwrap();
        // A transaction id is what holds the log's readers back.
        sqlx::query("SELECT pg_current_xact_id()")
            .execute(&mut *tx)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let health = {
            let _recording = metrics::set_default_local_recorder(&recorder);
            store.sample_health().await.unwrap()
        };
        tx.rollback().await.unwrap();
        health
    });
    let oldest = health.oldest_open_transaction.expect("an open transaction");
    assert!(oldest >= Duration::from_millis(300), "{oldest:?}");
    let seen = values(&snapshotter);
    match &seen["esrs_pg_oldest_open_transaction_seconds{}"] {
        DebugValue::Gauge(x) => assert!((x.into_inner() - oldest.as_secs_f64()).abs() < 1e-6),
        other => panic!("not a gauge: {other:?}"),
    }
    let gauge = |state: &str| match &seen[&format!("esrs_pg_pool_connections{{state={state}}}")] {
        DebugValue::Gauge(x) => x.into_inner(),
        other => panic!("not a gauge: {other:?}"),
    };
    assert_eq!(gauge("in_use"), f64::from(health.connections_in_use));
    assert_eq!(gauge("idle"), f64::from(health.connections_idle));
    assert!(health.connections_in_use + health.connections_idle >= 1);
    assert_eq!(seen.len(), 3);
}

/// The spans opened while it is the thread's subscriber: each one's name and fields.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<(String, Fields)>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Spans {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        struct Collect(Fields);
        impl tracing::field::Visit for Collect {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.insert(field.name().to_owned(), format!("{value:?}"));
            }
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                self.0.insert(field.name().to_owned(), value.to_owned());
            }
        }
        let mut fields = Collect(Fields::new());
        attrs.record(&mut fields);
        // The declared fields, recorded later or not (`events`, `outcome`), count too.
        for field in attrs.metadata().fields() {
            fields.0.entry(field.name().to_owned()).or_default();
        }
        self.0
            .lock()
            .unwrap()
            .push((attrs.metadata().name().to_owned(), fields.0));
    }
}

/// Every operation of the repository, the store and the runner opens a span; those of the
/// store carry the OpenTelemetry database attributes, and none a hand-timed `elapsed_us`.
#[test]
fn every_operation_has_a_span_with_the_opentelemetry_database_attributes() {
    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry().with(spans.clone());
    let _subscriber = tracing::subscriber::set_default(subscriber);
    let schema = run(async {
        let store = fresh_store().await;
        let repo = Repository::<Counter, _>::new(store.store.clone());
        let cart = id("spans");
        repo.execute(&cart, |c| c.add(1)).await.unwrap();
        repo.load(&cart).await.unwrap();
        repo.load_at(&cart, 1).await.unwrap();
        repo.load_as_of(&cart, esrs_core::chrono::Utc::now())
            .await
            .unwrap();
        repo.history(&cart).await.unwrap();
        store.stream_version(&id("counter-spans")).await.unwrap();
        let key = IdempotencyKey::new("spans").unwrap();
        store.find_idempotency_key(&key).await.unwrap();
        store
            .load_snapshot(&id("counter-spans"), Counter::SNAPSHOT_KEY)
            .await
            .unwrap();
        let mut runner = ProjectionRunner::new(
            store.store.clone(),
            PgCheckpoints::new(&store),
            Tally::default(),
        );
        runner.catch_up().await.unwrap();
        let running = ProjectionRunner::new(
            store.store.clone(),
            PgCheckpoints::new(&store),
            Tally::default(),
        )
        .spawn();
        running.wait_caught_up().await.unwrap();
        running.stop().await.unwrap();
        store.schema().to_owned()
    });
    let spans = spans.0.lock().unwrap().clone();
    let named = |name: &str| -> Vec<&BTreeMap<String, String>> {
        spans
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, f)| f)
            .collect()
    };
    for name in [
        "esrs.execute",
        "esrs.load",
        "esrs.load_at",
        "esrs.load_as_of",
        "esrs.history",
        "esrs.projection",
        "esrs.projection.batch",
    ] {
        assert!(!named(name).is_empty(), "no {name} span in {spans:?}");
    }
    for (name, operation, collection) in [
        ("esrs.pg.append", "append", "events"),
        ("esrs.pg.read_for_fold", "read_for_fold", "events"),
        ("esrs.pg.read_stream", "read_stream", "events"),
        ("esrs.pg.read_all", "read_all", "events"),
        ("esrs.pg.stream_version", "stream_version", "events"),
        (
            "esrs.pg.find_idempotency_key",
            "find_idempotency_key",
            "idempotency_keys",
        ),
        ("esrs.pg.load_snapshot", "load_snapshot", "snapshots"),
    ] {
        let found = named(name);
        assert!(!found.is_empty(), "no {name} span in {spans:?}");
        for fields in found {
            assert_eq!(fields["db.system.name"], "postgresql", "{name}");
            assert_eq!(fields["db.operation.name"], operation, "{name}");
            assert_eq!(fields["db.collection.name"], collection, "{name}");
            assert_eq!(fields["db.namespace"], schema, "{name}");
            assert_eq!(fields["otel.kind"], "client", "{name}");
        }
    }
    assert!(
        spans
            .iter()
            .all(|(_, fields)| !fields.contains_key("elapsed_us")),
        "a span's duration is its own"
    );
    assert!(named("esrs.pg.append")[0].contains_key("outcome"));
}
