//! Measures the relay's throughput and the end-to-end latency from append to consumer.
//!
//! ```text
//! cargo run --release -p esrs-nats --example relay-bench -- [EVENTS] [LATENCY_EVENTS] [PER_APPEND]
//! ```
//!
//! Needs PostgreSQL (`DATABASE_URL`, else `postgres://postgres@127.0.0.1:5432/test`) and NATS
//! with JetStream (`NATS_URL`, else `nats://127.0.0.1:4222`). Works in a schema and a
//! JetStream stream of its own, both removed at the end.
//!
//! - Throughput: EVENTS events (default 50,000) over 1,000 streams, PER_APPEND (default
//!   50) per append, are appended first, then one relay catch-up publishes them all
//!   (batches of 500): events/s. With 50 per append a batch holds 10 streams' events, 50
//!   each (the relay sends one event per stream at a time: 50 rounds); with 1 per append
//!   it holds 500 streams' events, one each (one round).
//! - Latency: a relay and a consumer follow live while LATENCY_EVENTS events (default
//!   2,000) are appended one per append, 200 per second; each event's latency is the time
//!   from the append's return to the consumer's handler: p50, p99, max.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use esrs_core::projection::{ErrorPolicy, InMemoryCheckpoints};
use esrs_core::store::{AppendRequest, NewEvent};
use esrs_core::{
    BoxError, EventStore, ExpectedVersion, Projection, ProjectionRunner, RecordedEvent, StreamId,
};
use esrs_nats::async_nats::{self, jetstream};
use esrs_nats::{JetStreamProjection, Outbox, Relay};
use esrs_postgres::{PgCheckpoints, PgStore, PgStoreOptions, sqlx};

type Appended = Arc<Mutex<Vec<Option<Instant>>>>;

/// Records when each event (numbered by its payload) reached the consumer.
struct Latency {
    appended: Appended,
    latencies: Arc<Mutex<Vec<Duration>>>,
}

impl Projection for Latency {
    type Event = serde_json::Value;
    fn name(&self) -> &str {
        "latency"
    }
    async fn handle(
        &mut self,
        _: &mut (),
        event: serde_json::Value,
        _: &RecordedEvent,
    ) -> Result<(), BoxError> {
        let now = Instant::now();
        let n = event["n"].as_u64().unwrap_or(0) as usize;
        let appended = self.appended.lock().unwrap().get(n).copied().flatten();
        if let Some(at) = appended {
            self.latencies
                .lock()
                .unwrap()
                .push(now.saturating_duration_since(at));
        }
        Ok(())
    }
}

fn payload(n: usize) -> NewEvent {
    let payload =
        serde_json::value::to_raw_value(&serde_json::json!({ "n": n, "amount_cents": 1234 }))
            .unwrap();
    NewEvent::new("InvoiceIssued", 1, payload)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let events: usize = args.next().map_or(Ok(50_000), |a| a.parse())?;
    let latency_events: usize = args.next().map_or(Ok(2_000), |a| a.parse())?;
    let per_append: usize = args.next().map_or(Ok(50), |a| a.parse())?;
    if per_append == 0 {
        return Err("PER_APPEND must be at least 1".into());
    }
    let database_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let nats_url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());

    let schema = format!("esrs_nats_bench_{}", std::process::id());
    let store = PgStoreOptions::new()
        .schema(&schema)
        .connect(&database_url)
        .await?;
    store.migrate().await?;
    let js = jetstream::new(async_nats::connect(&nats_url).await?);
    let name = format!("ESRS_BENCH_{}", std::process::id());
    let prefix = name.to_lowercase();
    js.create_stream(jetstream::stream::Config {
        name: name.clone(),
        subjects: vec![format!("{prefix}.>")],
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await?;
    let result = run(
        &store,
        &js,
        &name,
        &prefix,
        events,
        latency_events,
        per_append,
    )
    .await;
    let _ = js.delete_stream(&name).await;
    let _ = sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(store.pool())
        .await;
    result
}

async fn run(
    store: &PgStore,
    js: &jetstream::Context,
    name: &str,
    prefix: &str,
    events: usize,
    latency_events: usize,
    per_append: usize,
) -> Result<(), BoxError> {
    // Throughput.
    for i in 0..events / per_append {
        let stream = StreamId::new(format!("invoice-{}", i % 1_000))?;
        let batch = (0..per_append)
            .map(|j| payload(i * per_append + j))
            .collect();
        store
            .append(AppendRequest::new(stream, ExpectedVersion::Any, batch))
            .await?;
    }
    let relay = || async {
        Relay::builder(js.clone(), name)
            .subject_prefix(prefix)
            .build()
            .await
    };
    let mut runner = ProjectionRunner::new(
        store.clone(),
        Outbox::new(PgCheckpoints::new(store)),
        relay().await?,
    );
    let started = Instant::now();
    runner.catch_up().await?;
    let elapsed = started.elapsed();
    println!(
        "relay throughput: {events} events in {:.2} s = {:.0} events/s (catch-up, batches of 500, {per_append} per append)",
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64()
    );

    // Latency: the consumer starts after the throughput run's messages.
    let appended: Appended = Arc::new(Mutex::new(vec![None; latency_events]));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(latency_events)));
    let mut consumer = JetStreamProjection::new(
        js.get_stream(name).await?,
        InMemoryCheckpoints::new(),
        Latency {
            appended: appended.clone(),
            latencies: latencies.clone(),
        },
    )
    .idle_wait(Duration::from_millis(5));
    consumer.catch_up().await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let consuming = tokio::spawn(async move {
        consumer
            .run_until(async {
                let _ = stopped.await;
            })
            .await
    });
    let running = ProjectionRunner::new(
        store.clone(),
        Outbox::new(PgCheckpoints::new(store)),
        relay().await?,
    )
    .batch_size(500)
    .error_policy(ErrorPolicy::Retry {
        max: 10,
        backoff: Duration::from_millis(100),
    })
    .spawn();
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    for n in 0..latency_events {
        tick.tick().await;
        let stream = StreamId::new(format!("invoice-live-{}", n % 100))?;
        // The payload numbers the event in the latency table.
        store
            .append(AppendRequest::new(
                stream,
                ExpectedVersion::Any,
                vec![payload(n)],
            ))
            .await?;
        appended.lock().unwrap()[n] = Some(Instant::now());
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while latencies.lock().unwrap().len() < latency_events && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(());
    consuming.await??;
    running.stop().await?;
    let mut sorted = latencies.lock().unwrap().clone();
    sorted.sort();
    if sorted.is_empty() {
        return Err("no event reached the consumer".into());
    }
    println!(
        "end-to-end latency (append returned → consumer handler, {} events at 200/s): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        sorted.len(),
        percentile(&sorted, 0.50).as_secs_f64() * 1e3,
        percentile(&sorted, 0.99).as_secs_f64() * 1e3,
        sorted.last().unwrap().as_secs_f64() * 1e3,
    );
    Ok(())
}
