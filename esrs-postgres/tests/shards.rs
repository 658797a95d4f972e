//! A sharded projection over PostgreSQL, run by several operating-system processes: they
//! share the shards, the shards of a killed process are taken over, and every event is
//! applied exactly once (the read model is written in each shard's checkpoint transaction).
//!
//! The processes are this test binary run again with the `shard_worker` test, which is
//! ignored unless `ESRS_SHARD_WORKER_SCHEMA` is set.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::fresh_store;
use esrs_core::projection::{CheckpointStore, LogFilter, Shard, ShardedRunner, shard_name};
use esrs_core::store::{AppendRequest, NewEvent};
use esrs_core::{
    BoxError, EventStore, ExpectedVersion, Position, Projection, ProjectionRunner, RecordedEvent,
    StreamId,
};
use esrs_postgres::sqlx;
use esrs_postgres::{PgCheckpoints, PgStore, PgStoreOptions, PgTransaction};

const SHARDS: u32 = 4;
const STREAMS: usize = 60;

/// The SQL rule of a stream's shard, as [`Shard`] documents it.
fn shard_sql(column: &str, count: u32) -> String {
    format!("(('x' || substr(md5({column}), 1, 8))::bit(32)::bigint % {count})")
}

/// Keeps, per stream, the sum of its `Added` amounts, and records every event it applies
/// (without a key, so that an event applied twice shows as two rows). Written in the
/// shard's transaction: exactly once.
struct Totals {
    name: &'static str,
    schema: String,
    shard: Shard,
}

impl Projection<PgTransaction> for Totals {
    type Event = serde_json::Value;
    fn name(&self) -> &str {
        self.name
    }
    fn filter(&self) -> LogFilter {
        LogFilter::names(["Added"])
    }
    async fn handle(
        &mut self,
        tx: &mut PgTransaction,
        event: serde_json::Value,
        envelope: &RecordedEvent,
    ) -> Result<(), BoxError> {
        assert!(self.shard.contains(&envelope.stream));
        let schema = &self.schema;
        let name = self.name;
        sqlx::query(&format!(
            "INSERT INTO {schema}.{name}_applied (stream, version) VALUES ($1, $2)"
        ))
        .bind(envelope.stream.as_str())
        .bind(i64::try_from(envelope.version)?)
        .execute(&mut **tx)
        .await?;
        sqlx::query(&format!(
            "INSERT INTO {schema}.{name}_totals (stream, total) VALUES ($1, $2)
             ON CONFLICT (stream) DO UPDATE SET total = {name}_totals.total + EXCLUDED.total"
        ))
        .bind(envelope.stream.as_str())
        .bind(event["amount"].as_i64().ok_or("an amount")?)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
    async fn reset(&mut self, tx: &mut PgTransaction) -> Result<(), BoxError> {
        let (schema, name) = (&self.schema, self.name);
        let mine = format!(
            "{} = {}",
            shard_sql("stream", self.shard.count()),
            self.shard.index()
        );
        for table in ["applied", "totals"] {
            sqlx::query(&format!("DELETE FROM {schema}.{name}_{table} WHERE {mine}"))
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }
}

async fn create_read_model(store: &PgStore, name: &str) {
    let schema = store.schema();
    for sql in [
        format!(
            "CREATE TABLE {schema}.{name}_applied (stream text NOT NULL, version bigint NOT NULL)"
        ),
        format!(
            "CREATE TABLE {schema}.{name}_totals (stream text PRIMARY KEY, total bigint NOT NULL)"
        ),
    ] {
        sqlx::query(&sql)
            .execute(store.pool())
            .await
            .expect("create the read model");
    }
}

fn sharded(store: &PgStore, name: &'static str) -> ShardedRunner<PgStore, PgCheckpoints, Totals> {
    let schema = store.schema().to_owned();
    ShardedRunner::new(
        store.clone(),
        PgCheckpoints::new(store),
        SHARDS,
        move |shard| Totals {
            name,
            schema: schema.clone(),
            shard,
        },
    )
    .configure(|runner| {
        runner
            .batch_size(50)
            .poll_interval(Duration::from_millis(100))
    })
    .takeover_interval(Duration::from_millis(100))
}

/// Appends `n` events over [`STREAMS`] streams, every fifth one a `Noted` the projection
/// does not read; returns the last position.
async fn seed(store: &PgStore, from: usize, n: usize) -> Position {
    let mut last = Position::START;
    for i in from..from + n {
        let (name, payload) = if i % 5 == 4 {
            ("Noted", serde_json::json!({ "text": "a note" }))
        } else {
            (
                "Added",
                serde_json::json!({ "amount": (i % 13) as i64 + 1 }),
            )
        };
        let payload = serde_json::value::to_raw_value(&payload).expect("a payload");
        let outcome = store
            .append(AppendRequest::new(
                StreamId::new(format!("account-{}", i % STREAMS)).expect("a stream id"),
                ExpectedVersion::Any,
                vec![NewEvent::new(name, 1, payload)],
            ))
            .await
            .expect("append");
        last = outcome.last_position.expect("a position");
    }
    last
}

/// The rows of a read model: totals, and applied (stream, version) with their count.
async fn read_model(store: &PgStore, name: &str) -> (Vec<(String, i64)>, Vec<(String, i64, i64)>) {
    let schema = store.schema();
    let totals = sqlx::query_as(&format!(
        "SELECT stream, total FROM {schema}.{name}_totals ORDER BY stream"
    ))
    .fetch_all(store.pool())
    .await
    .expect("totals");
    let applied = sqlx::query_as(&format!(
        "SELECT stream, version, count(*) FROM {schema}.{name}_applied GROUP BY stream, version ORDER BY stream, version"
    ))
    .fetch_all(store.pool())
    .await
    .expect("applied");
    (totals, applied)
}

/// A worker process: its stdout, read line by line on a thread of its own.
struct Worker {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Worker {
    fn start(schema: &str, stop_file: &std::path::Path) -> Self {
        let mut child = Command::new(std::env::current_exe().expect("the test binary"))
            .args([
                "--exact",
                "shard_worker",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("ESRS_SHARD_WORKER_SCHEMA", schema)
            .env("ESRS_SHARD_WORKER_STOP", stop_file)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start a worker");
        let stdout: ChildStdout = child.stdout.take().expect("stdout");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// Waits for the worker to say it owns `shards` shards.
    fn wait_owned(&self, shards: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let expected = format!("owned {shards}");
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line == expected => return,
                Ok(_) => {}
                Err(_) => panic!("the worker never said `{expected}`"),
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// 4 shards over 3 processes, at most 2 shards each: two processes run two shards each, the
/// third stands by. Events are appended while they run; one of the two running processes
/// is killed (SIGKILL) mid-run, and the standby takes its shards over. In the end every
/// event is applied exactly once, and the read model equals a rebuild, sharded or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_shards_over_three_processes_one_killed_apply_every_event_once() {
    let store = fresh_store().await;
    create_read_model(&store, "totals").await;
    seed(&store, 0, 1_000).await;
    let stop_file = std::env::temp_dir().join(format!("esrs-shards-{}", store.schema()));
    let _ = std::fs::remove_file(&stop_file);

    let first = Worker::start(store.schema(), &stop_file);
    first.wait_owned(2);
    let second = Worker::start(store.schema(), &stop_file);
    second.wait_owned(2);
    let standby = Worker::start(store.schema(), &stop_file);

    // Appends go on while the shards run; the first process is killed half-way.
    let writer = {
        let store = store.store.clone();
        tokio::spawn(async move { seed(&store, 1_000, 2_000).await })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while store
        .head_position()
        .await
        .expect("head")
        .map_or(0, |p| p.sequence)
        < 2_000
    {
        assert!(Instant::now() < deadline, "the writer makes progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut first = first;
    first.child.kill().expect("kill the first worker");
    first.child.wait().expect("the first worker ends");
    standby.wait_owned(2);
    let head = writer.await.expect("the writer");

    // Every shard gets to the head.
    let checkpoints = PgCheckpoints::new(&store);
    let deadline = Instant::now() + Duration::from_secs(60);
    for index in 0..SHARDS {
        let name = shard_name("totals", Shard::new(index, SHARDS).expect("a shard"));
        while checkpoints.load(&name).await.expect("a checkpoint") < head {
            assert!(Instant::now() < deadline, "{name} catches up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    std::fs::write(&stop_file, b"stop").expect("the stop file");
    for mut worker in [second, standby] {
        let status = worker.child.wait().expect("the worker ends");
        assert!(status.success(), "a worker stopped cleanly: {status}");
    }
    let _ = std::fs::remove_file(&stop_file);

    let (totals, applied) = read_model(&store, "totals").await;
    assert_eq!(applied.len(), 2_400, "every `Added` applied");
    assert!(
        applied.iter().all(|(_, _, times)| *times == 1),
        "every event applied exactly once"
    );

    // An unsharded projection over the whole log gets the same totals.
    create_read_model(&store, "whole").await;
    let schema = store.schema().to_owned();
    let mut whole = ProjectionRunner::new(
        store.store.clone(),
        PgCheckpoints::new(&store),
        Totals {
            name: "whole",
            schema,
            shard: Shard::new(0, 1).expect("a shard"),
        },
    );
    assert_eq!(whole.catch_up().await.expect("catch up"), head);
    assert_eq!(
        read_model(&store, "whole").await,
        (totals.clone(), applied.clone())
    );

    // A rebuild of the sharded projection (each shard empties its rows, then reads the log
    // again) equals its incremental result.
    let rebuilt = sharded(&store, "totals").rebuild().await.expect("rebuild");
    assert_eq!(rebuilt, vec![head; SHARDS as usize]);
    assert_eq!(read_model(&store, "totals").await, (totals, applied));
}

/// The worker process of the test above; does nothing unless run by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by four_shards_over_three_processes_one_killed_apply_every_event_once"]
async fn shard_worker() {
    let Ok(schema) = std::env::var("ESRS_SHARD_WORKER_SCHEMA") else {
        return;
    };
    let stop_file = std::env::var("ESRS_SHARD_WORKER_STOP").expect("ESRS_SHARD_WORKER_STOP");
    let store = PgStoreOptions::new()
        .schema(&schema)
        .build(common::pool(10).await)
        .expect("a store");
    let running = sharded(&store, "totals").max_owned(2).spawn();
    let mut said = usize::MAX;
    while !std::path::Path::new(&stop_file).exists() {
        let owned = running.owned().len();
        if owned != said {
            println!("owned {owned}");
            said = owned;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    running.stop().await.expect("the shards stop cleanly");
}
