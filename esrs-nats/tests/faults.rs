//! The relay and the consumer under faults: processes killed with SIGKILL at random
//! points, and a NATS server stopped and started again mid-run.
//!
//! The children are this test binary run again on one `#[ignore]`d test (`relay_child`,
//! `consumer_child`), which does its work when the environment names it and nothing
//! otherwise.

mod common;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use esrs_core::projection::ErrorPolicy;
use esrs_core::{BoxError, Projection, ProjectionRunner, RecordedEvent};
use esrs_nats::{JetStreamProjection, Outbox, Relay};
use esrs_postgres::{PgCheckpoints, PgStore, PgTransaction, sqlx};

fn spawn_child(test: &str, env: &[(&str, &str)]) -> Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            test,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        command.env(k, v);
    }
    command.spawn().expect("the child starts")
}

fn relay_runner(
    store: &PgStore,
    relay: Relay,
) -> ProjectionRunner<PgStore, Outbox<PgCheckpoints>, Relay> {
    ProjectionRunner::new(store.clone(), Outbox::new(PgCheckpoints::new(store)), relay)
        .batch_size(100)
        .poll_interval(Duration::from_millis(200))
        .wait_for_lock(Duration::from_millis(100))
        .error_policy(ErrorPolicy::Retry {
            max: u32::MAX,
            backoff: Duration::from_millis(100),
        })
}

/// A relay process: `ESRS_NATS_CHILD_RELAY=<schema> <stream> <prefix> <nats url>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by the fault tests"]
async fn relay_child() {
    let Ok(args) = std::env::var("ESRS_NATS_CHILD_RELAY") else {
        return;
    };
    let args: Vec<&str> = args.split(' ').collect();
    let store = store_in(args[0], false).await;
    let relay = Relay::builder(jetstream_at(args[3]).await, args[1])
        .subject_prefix(args[2])
        .build()
        .await
        .unwrap();
    let running = relay_runner(&store, relay).spawn();
    // Until killed.
    tokio::time::sleep(Duration::from_secs(600)).await;
    drop(running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_five_times_still_publishes_exactly_once() {
    let (store, schema) = fresh_store().await;
    let js = TestStream::create(jetstream_at(&nats_url()).await, Duration::from_secs(120)).await;
    let args = format!("{} {} {} {}", schema.0, js.name, js.prefix, nats_url());
    let env = [("ESRS_NATS_CHILD_RELAY", args.as_str())];
    let mut expected = HashMap::new();
    for round in 0..5 {
        // New events while the child relays: 600 per round.
        let mut child = spawn_child("relay_child", &env);
        for (stream, n) in append_events(&store, 30, 60, 10, &format!("k{round}")).await {
            *expected.entry(stream).or_insert(0) += n;
        }
        tokio::time::sleep(Duration::from_millis(200 + random_below(1_200))).await;
        child.kill().unwrap();
        child.wait().unwrap();
    }
    // A last relay finishes the log.
    let mut child = spawn_child("relay_child", &env);
    js.wait_for(3_000, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_exactly_once_in_order(&js.read_all().await, &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_stopped_and_started_again_mid_run_loses_nothing() {
    let mut server = NatsServer::start();
    let (store, _schema) = fresh_store().await;
    let jetstream = jetstream_at(&server.url()).await;
    let js = TestStream::create(jetstream.clone(), Duration::from_secs(120)).await;
    let relay = Relay::builder(jetstream, &js.name)
        .subject_prefix(&js.prefix)
        .build()
        .await
        .unwrap();
    let running = relay_runner(&store, relay).spawn();
    let mut expected = HashMap::new();
    // Three outages, each while the relay is busy with the events just appended (so that
    // publishes are in flight when the server goes), with appends going on while NATS is
    // down: the store keeps them.
    for outage in 0..3 {
        expected.extend(append_events(&store, 30, 100, 10, &format!("up{outage}")).await);
        tokio::time::sleep(Duration::from_millis(random_below(100))).await;
        server.stop();
        expected.extend(append_events(&store, 30, 100, 10, &format!("down{outage}")).await);
        tokio::time::sleep(Duration::from_secs(1)).await;
        server.resume();
    }
    expected.extend(append_events(&store, 30, 100, 10, "last").await);
    let total: u64 = expected.values().sum();
    js.wait_for(total, Duration::from_secs(90)).await;
    let runner = running.stop().await.unwrap();
    assert!(runner.status().handled >= total);
    assert_exactly_once_in_order(&js.read_all().await, &expected);
}

/// A read model in PostgreSQL: one row per event applied, in the transaction of the
/// consumer's checkpoint, with no constraint that would hide a double application.
#[derive(Debug)]
struct Applied {
    schema: String,
    slow: Duration,
}

impl Projection<PgTransaction> for Applied {
    type Event = serde_json::Value;
    fn name(&self) -> &str {
        "applied"
    }
    async fn handle(
        &mut self,
        tx: &mut PgTransaction,
        _event: serde_json::Value,
        envelope: &RecordedEvent,
    ) -> Result<(), BoxError> {
        sqlx::query(&format!(
            "INSERT INTO {}.applied (stream, version) VALUES ($1, $2)",
            self.schema
        ))
        .bind(envelope.stream.as_str())
        .bind(envelope.version as i64)
        .execute(&mut **tx)
        .await?;
        if !self.slow.is_zero() {
            tokio::time::sleep(self.slow).await;
        }
        Ok(())
    }
}

async fn consumer_for(
    read_model: &PgStore,
    js: &TestStream,
    slow: Duration,
) -> JetStreamProjection<PgCheckpoints, Applied> {
    JetStreamProjection::new(
        js.stream().await,
        PgCheckpoints::new(read_model),
        Applied {
            schema: read_model.schema().to_owned(),
            slow,
        },
    )
    .batch_size(50)
}

/// A consumer process: `ESRS_NATS_CHILD_CONSUMER=<read model schema> <stream> <nats url>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by the fault tests"]
async fn consumer_child() {
    let Ok(args) = std::env::var("ESRS_NATS_CHILD_CONSUMER") else {
        return;
    };
    let args: Vec<&str> = args.split(' ').collect();
    let read_model = store_in(args[0], false).await;
    let js = TestStream {
        jetstream: jetstream_at(args[2]).await,
        name: args[1].to_owned(),
        prefix: String::new(),
    };
    let mut consumer = consumer_for(&read_model, &js, Duration::from_millis(1)).await;
    // Until killed.
    let _ = consumer.run_until(std::future::pending()).await;
    std::mem::forget(js);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_killed_mid_batch_resumes_without_loss_or_double_application() {
    let (store, _schema) = fresh_store().await;
    let (read_model, read_schema) = fresh_store().await;
    sqlx::query(&format!(
        "CREATE TABLE {}.applied (stream text NOT NULL, version bigint NOT NULL)",
        read_schema.0
    ))
    .execute(read_model.pool())
    .await
    .unwrap();
    let js = TestStream::create(jetstream_at(&nats_url()).await, Duration::from_secs(120)).await;
    let expected = append_events(&store, 20, 200, 10, "c").await;
    let relay = Relay::builder(js.jetstream.clone(), &js.name)
        .subject_prefix(&js.prefix)
        .build()
        .await
        .unwrap();
    relay_runner(&store, relay).catch_up().await.unwrap();

    let args = format!("{} {} {}", read_schema.0, js.name, nats_url());
    for _ in 0..3 {
        let mut child = spawn_child("consumer_child", &[("ESRS_NATS_CHILD_CONSUMER", &args)]);
        tokio::time::sleep(Duration::from_millis(700 + random_below(800))).await;
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let applied_before: i64 =
        sqlx::query_scalar(&format!("SELECT count(*) FROM {}.applied", read_schema.0))
            .fetch_one(read_model.pool())
            .await
            .unwrap();
    assert!(
        applied_before > 0 && applied_before < 2_000,
        "killed mid-run: {applied_before}"
    );

    // The projection lock of a killed process goes with its connection.
    let mut consumer = consumer_for(&read_model, &js, Duration::ZERO).await;
    let progress = loop {
        match consumer.catch_up().await {
            Err(esrs_nats::ConsumerError::AlreadyRunning { .. }) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            other => break other.unwrap(),
        }
    };
    assert_eq!(progress.checkpoint.sequence, 2_000);

    let rows: Vec<(String, i64)> = sqlx::query_as(&format!(
        "SELECT stream, version FROM {}.applied",
        read_schema.0
    ))
    .fetch_all(read_model.pool())
    .await
    .unwrap();
    let mut seen: HashMap<String, Vec<i64>> = HashMap::new();
    for (stream, version) in rows {
        seen.entry(stream).or_default().push(version);
    }
    for (stream, versions) in &expected {
        let mut got = seen.remove(stream).unwrap_or_default();
        got.sort();
        assert_eq!(
            got,
            (1..=*versions as i64).collect::<Vec<_>>(),
            "{stream}: each version applied once"
        );
    }
    assert!(seen.is_empty());
}
