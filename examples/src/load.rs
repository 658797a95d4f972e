//! The cart under load, with its metrics on a Prometheus endpoint: what a team sees on the
//! dashboard `examples/grafana/esrs.json` (`cargo run -p esrs-examples --bin metrics`).
//!
//! Concurrent writers add items to a few shared carts (so that they conflict and retry),
//! check a cart out when it is full and move on to a new one, and repeat some commands with
//! the same idempotency key (a double click); a projection follows the log and counts the
//! items. [`serve_metrics`] installs `metrics-exporter-prometheus` with its HTTP listener,
//! and [`esrs_core::metrics::describe`] gives it the help text of every metric.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use esrs_core::projection::InMemoryCheckpoints;
use esrs_core::{BoxError as HandlerError, IdempotencyKey, RecordedEvent};
use esrs_core::{EventStore, ExecuteError, Projection, ProjectionRunner, Repository, StreamId};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

use crate::BoxError;
use crate::cart::{Cart, CartError, CartEvent, MAX_ITEMS};

/// The port of the `/metrics` endpoint when none is given: 9464, the port OpenTelemetry's
/// Prometheus exporter uses by convention.
pub const DEFAULT_PORT: u16 = 9464;

/// The bucket bounds, in seconds, of the duration histograms: around the 50 ms line that
/// the slow-append warning and the dashboard draw, so that `histogram_quantile` is precise
/// there.
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Installs the Prometheus recorder as the process's metrics recorder, serving the text
/// exposition format over HTTP at `addr` (any path answers, `/metrics` included), with the
/// duration histograms as Prometheus histograms (buckets around 50 ms), and describes
/// esrs's metrics to it. Call it from inside a tokio runtime, once per process.
pub fn serve_metrics(addr: SocketAddr) -> Result<(), BoxError> {
    let mut builder = PrometheusBuilder::new().with_http_listener(addr);
    for name in [
        esrs_core::metrics::APPEND_DURATION_SECONDS,
        esrs_core::metrics::LOAD_DURATION_SECONDS,
        esrs_core::metrics::PROJECTION_BATCH_DURATION_SECONDS,
    ] {
        builder =
            builder.set_buckets_for_metric(Matcher::Full(name.to_owned()), DURATION_BUCKETS)?;
    }
    builder.install()?;
    esrs_core::metrics::describe();
    Ok(())
}

/// How much load [`run`] makes.
#[derive(Debug, Clone)]
pub struct Load {
    /// Concurrent writers.
    pub writers: usize,
    /// Carts the writers share at a time: fewer carts, more conflicts.
    pub carts: usize,
    /// Commands per writer.
    pub commands: u64,
    /// Every this many commands, a writer sends its command twice with one idempotency key.
    pub repeat_every: u64,
    /// A prefix of the cart ids, so that runs on one database do not meet.
    pub prefix: String,
}

impl Default for Load {
    fn default() -> Self {
        Self {
            writers: 8,
            carts: 4,
            commands: 500,
            repeat_every: 20,
            prefix: String::new(),
        }
    }
}

/// What [`run`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Summary {
    /// Commands that appended.
    pub appended: u64,
    /// Commands answered with the outcome of their idempotency key.
    pub replayed: u64,
    /// Commands refused by a cart (checked out meanwhile by another writer).
    pub rejected: u64,
    /// Commands that lost to other writers more times than their retries.
    pub gave_up: u64,
    /// Items the projection counted.
    pub items_projected: u64,
}

/// Counts the items added to carts: a projection for the lag panels.
#[derive(Debug, Default)]
struct ItemsCounted {
    items: u64,
}

impl Projection for ItemsCounted {
    type Event = serde_json::Value;
    fn name(&self) -> &str {
        "items_counted"
    }
    fn handles(&self, name: &str) -> bool {
        name == "ItemAdded"
    }
    async fn handle(
        &mut self,
        _: &mut (),
        _: serde_json::Value,
        _: &RecordedEvent,
    ) -> Result<(), HandlerError> {
        self.items += 1;
        Ok(())
    }
}

/// Runs `load` on `store`: the writers on tokio tasks, the projection beside them; returns
/// when every writer is done and the projection has caught up.
pub async fn run<S: EventStore + Clone>(store: S, load: &Load) -> Result<Summary, BoxError> {
    let projection = ProjectionRunner::new(
        store.clone(),
        InMemoryCheckpoints::new(),
        ItemsCounted::default(),
    )
    .spawn();
    let carts = Repository::<Cart, _>::new(store.clone())
        .with_retries(5)
        .with_cache(1_000);
    // The generation of each shared cart: a full cart is checked out, and its slot moves on
    // to a new cart.
    let generations: Arc<Vec<AtomicU64>> =
        Arc::new((0..load.carts.max(1)).map(|_| AtomicU64::new(0)).collect());
    let mut writers = Vec::with_capacity(load.writers);
    for writer in 0..load.writers {
        let carts = carts.clone();
        let generations = Arc::clone(&generations);
        let load = load.clone();
        writers.push(tokio::spawn(async move {
            let mut summary = Summary::default();
            for n in 0..load.commands {
                let slot = (writer as u64 * 7 + n * 3) as usize % generations.len();
                let generation = generations[slot].load(Ordering::Relaxed);
                let id = StreamId::new(format!("{}{slot}-{generation}", load.prefix))?;
                let item = format!("item-{writer}-{n}");
                let command = |cart: &Cart| -> Result<Vec<CartEvent>, CartError> {
                    if cart.items().len() >= MAX_ITEMS {
                        cart.check_out()
                    } else {
                        Ok(vec![cart.add_item(&item)?.into()])
                    }
                };
                let repeat = load.repeat_every > 0 && n % load.repeat_every == 0;
                let key = repeat.then(|| IdempotencyKey::from(uuid::Uuid::new_v4()));
                let tries = if repeat { 2 } else { 1 };
                for _ in 0..tries {
                    let mut execute = carts.execute(&id, &command);
                    if let Some(key) = &key {
                        execute = execute.idempotency_key(key.clone());
                    }
                    match execute.await {
                        Ok(done) if done.outcome.deduplicated => summary.replayed += 1,
                        Ok(done) => {
                            summary.appended += 1;
                            if done.state.is_checked_out() {
                                let _ = generations[slot].compare_exchange(
                                    generation,
                                    generation + 1,
                                    Ordering::Relaxed,
                                    Ordering::Relaxed,
                                );
                            }
                        }
                        Err(ExecuteError::Rejected(CartError::AlreadyCheckedOut)) => {
                            summary.rejected += 1;
                            let _ = generations[slot].compare_exchange(
                                generation,
                                generation + 1,
                                Ordering::Relaxed,
                                Ordering::Relaxed,
                            );
                        }
                        Err(error) if error.is_conflict() => summary.gave_up += 1,
                        Err(ExecuteError::Rejected(other)) => return Err(other.into()),
                        Err(ExecuteError::Failed(error)) => return Err(error.into()),
                    }
                }
            }
            Ok::<_, BoxError>(summary)
        }));
    }
    let mut summary = Summary::default();
    for writer in writers {
        let done = writer.await??;
        summary.appended += done.appended;
        summary.replayed += done.replayed;
        summary.rejected += done.rejected;
        summary.gave_up += done.gave_up;
    }
    if let Some(head) = store.head_position().await? {
        projection.wait_for(head).await?;
    }
    let runner = projection.stop().await?;
    summary.items_projected = runner.projection().items;
    Ok(summary)
}
