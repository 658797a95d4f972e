//! The metrics esrs records, through the [`metrics`](https://docs.rs/metrics) facade.
//!
//! esrs records; the application chooses where the numbers go by installing a recorder
//! (`metrics-exporter-prometheus`, an OpenTelemetry bridge, a test recorder…). With no
//! recorder installed, nothing is recorded: every measurement is a look-up of the current
//! recorder that finds the no-op one, with keys made of `&'static str` labels, never
//! allocated. Call [`describe`] once after installing a recorder to give it each metric's
//! help text and unit.
//!
//! Names and units follow the Prometheus conventions: base units (seconds, bytes), counters
//! end in `_total`. Histograms are recorded as raw values; the exporter decides their
//! buckets or quantiles (`metrics-exporter-prometheus` renders summaries with quantiles
//! unless it is given buckets).
//!
//! # Every metric
//!
//! | name | type | unit | labels | what it measures |
//! |---|---|---|---|---|
//! | `esrs_append_duration_seconds` | histogram | seconds | `store` = `memory` \| `postgres`; `outcome` = `appended` \| `deduplicated` \| `conflict` \| `error` | one call of [`EventStore::append`](crate::EventStore::append), from the call to its answer, including the store's own retries of a lost race for [`ExpectedVersion::Any`](crate::ExpectedVersion::Any) |
//! | `esrs_append_events` | histogram | events | `store` | the events of one append that wrote (`outcome = appended`) |
//! | `esrs_payload_bytes` | histogram | bytes | `store` | the JSON payload of each event written |
//! | `esrs_load_duration_seconds` | histogram | seconds | `aggregate`; `snapshot` = `hit` \| `miss` \| `none` | one load of an aggregate's current state ([`Repository::load`](crate::Repository::load) and the load of a command): `hit`, a snapshot was used; `miss`, the aggregate keeps snapshots but none was usable (the stream is shorter than `snapshot_every`, or see `esrs_snapshot_misses_total`); `none`, the aggregate keeps no snapshots |
//! | `esrs_conflicts_total` | counter | | `aggregate` | appends of a command refused because another writer appended first (each attempt counts: a command retried twice that finally wins counts 2) |
//! | `esrs_command_retries_total` | counter | | `aggregate` | commands run again after a conflict, within their retries ([`Repository::with_retries`](crate::Repository::with_retries)); the free re-run after a stale cached state is not a retry |
//! | `esrs_idempotent_replays_total` | counter | | `aggregate` | commands answered with the original outcome of their idempotency key, nothing written |
//! | `esrs_snapshot_saves_total` | counter | | `aggregate` | snapshots saved by commands |
//! | `esrs_snapshot_misses_total` | counter | | `aggregate`; `reason` = `absent` \| `undecodable` | loads that found no usable snapshot although the stream is at least `snapshot_every` events long: `absent`, none of the fold's key (the snapshots there were written by another fold, whose fingerprint differs, and the store does not return them; or they were deleted; or their save failed, or has not happened yet: a load right after the append that reached the multiple of `snapshot_every`, before that command saved its snapshot). Telling a stale fingerprint from the others would cost a query per load; `undecodable`, the snapshot of the key did not decode |
//! | `esrs_cache_total` | counter | | `aggregate`; `result` = `hit` \| `miss` \| `stale` | commands of a repository with a cache ([`Repository::with_cache`](crate::Repository::with_cache)): `hit`, the state came from the cache; `miss`, it was loaded; `stale`, a cached state was found stale and reloaded |
//! | `esrs_projection_events_total` | counter | | `projection`; `result` = `handled` \| `skipped` | events of committed batches: handled by the projection, or skipped (read, then refused by its `handles`; the events its `filter` leaves out are not read and not counted) |
//! | `esrs_projection_batch_duration_seconds` | histogram | seconds | `projection` | one committed batch, from its first read to its checkpoint's commit |
//! | `esrs_projection_checkpoint_position` | gauge | | `projection` | the global sequence number of the checkpoint (the last event handled) |
//! | `esrs_projection_lag_events` | gauge | events | `projection` | the global sequence number of the head of the log minus the checkpoint's, after each batch (0 once caught up): an estimate of the events left, as sequence numbers may have gaps; the head is the one the runner already reads for its status ([`ProjectionStatus::head`](crate::projection::ProjectionStatus::head): at most every 100 ms while catching up, and at the end of each pass), no extra query |
//! | `esrs_projection_lag_seconds` | gauge | seconds | `projection` | after each batch, the age of the last event handled, an upper bound of the age of the oldest event not yet handled (0 once caught up) |
//! | `esrs_projection_errors_total` | counter | | `projection`; `policy` = `retry` \| `stop` | failed batches, by what the [`ErrorPolicy`](crate::projection::ErrorPolicy) did: `retry`, the batch is retried; `stop`, the runner stopped with the error |
//! | `esrs_projection_lock_held` | gauge | | `projection` | 1 while the runner holds the projection's lock, 0 otherwise |
//! | `esrs_pg_oldest_open_transaction_seconds` | gauge | seconds | | the age of the oldest open transaction of the PostgreSQL cluster that has written (it has a transaction id): the global log is read only below it, so it is how long readers of the log can be held back. Set by `PgStore::sample_health` (in `esrs-postgres`); 0 when there is none |
//! | `esrs_pg_pool_connections` | gauge | connections | `state` = `in_use` \| `idle` | the connections of the store's pool, as of the last `PgStore::sample_health`; connections the store keeps between operations count as `in_use` |
//!
//! The `aggregate` label is the aggregate's name (`#[aggregate(name = …)]`), `projection` the
//! projection's [`name`](crate::Projection::name).

use std::time::Duration;

use ::metrics::{Key, Label, Level, Metadata, SharedString, Unit};

use crate::aggregate::Aggregate;
use crate::envelope::AppendOutcome;
use crate::error::Result;

/// `esrs_append_duration_seconds`: see [the table](self#every-metric).
pub const APPEND_DURATION_SECONDS: &str = "esrs_append_duration_seconds";
/// `esrs_append_events`: see [the table](self#every-metric).
pub const APPEND_EVENTS: &str = "esrs_append_events";
/// `esrs_payload_bytes`: see [the table](self#every-metric).
pub const PAYLOAD_BYTES: &str = "esrs_payload_bytes";
/// `esrs_load_duration_seconds`: see [the table](self#every-metric).
pub const LOAD_DURATION_SECONDS: &str = "esrs_load_duration_seconds";
/// `esrs_conflicts_total`: see [the table](self#every-metric).
pub const CONFLICTS_TOTAL: &str = "esrs_conflicts_total";
/// `esrs_command_retries_total`: see [the table](self#every-metric).
pub const COMMAND_RETRIES_TOTAL: &str = "esrs_command_retries_total";
/// `esrs_idempotent_replays_total`: see [the table](self#every-metric).
pub const IDEMPOTENT_REPLAYS_TOTAL: &str = "esrs_idempotent_replays_total";
/// `esrs_snapshot_saves_total`: see [the table](self#every-metric).
pub const SNAPSHOT_SAVES_TOTAL: &str = "esrs_snapshot_saves_total";
/// `esrs_snapshot_misses_total`: see [the table](self#every-metric).
pub const SNAPSHOT_MISSES_TOTAL: &str = "esrs_snapshot_misses_total";
/// `esrs_cache_total`: see [the table](self#every-metric).
pub const CACHE_TOTAL: &str = "esrs_cache_total";
/// `esrs_projection_events_total`: see [the table](self#every-metric).
pub const PROJECTION_EVENTS_TOTAL: &str = "esrs_projection_events_total";
/// `esrs_projection_batch_duration_seconds`: see [the table](self#every-metric).
pub const PROJECTION_BATCH_DURATION_SECONDS: &str = "esrs_projection_batch_duration_seconds";
/// `esrs_projection_checkpoint_position`: see [the table](self#every-metric).
pub const PROJECTION_CHECKPOINT_POSITION: &str = "esrs_projection_checkpoint_position";
/// `esrs_projection_lag_events`: see [the table](self#every-metric).
pub const PROJECTION_LAG_EVENTS: &str = "esrs_projection_lag_events";
/// `esrs_projection_lag_seconds`: see [the table](self#every-metric).
pub const PROJECTION_LAG_SECONDS: &str = "esrs_projection_lag_seconds";
/// `esrs_projection_errors_total`: see [the table](self#every-metric).
pub const PROJECTION_ERRORS_TOTAL: &str = "esrs_projection_errors_total";
/// `esrs_projection_lock_held`: see [the table](self#every-metric).
pub const PROJECTION_LOCK_HELD: &str = "esrs_projection_lock_held";
/// `esrs_pg_oldest_open_transaction_seconds`: see [the table](self#every-metric).
pub const PG_OLDEST_OPEN_TRANSACTION_SECONDS: &str = "esrs_pg_oldest_open_transaction_seconds";
/// `esrs_pg_pool_connections`: see [the table](self#every-metric).
pub const PG_POOL_CONNECTIONS: &str = "esrs_pg_pool_connections";

/// What [`describe`] tells the recorder: name, kind, unit, help text.
const DESCRIPTIONS: &[(&str, Kind, Option<Unit>, &str)] = &[
    (
        APPEND_DURATION_SECONDS,
        Kind::Histogram,
        Some(Unit::Seconds),
        "Duration of one append to the event store, by store and outcome.",
    ),
    (
        APPEND_EVENTS,
        Kind::Histogram,
        Some(Unit::Count),
        "Events written by one append.",
    ),
    (
        PAYLOAD_BYTES,
        Kind::Histogram,
        Some(Unit::Bytes),
        "JSON payload size of each event written.",
    ),
    (
        LOAD_DURATION_SECONDS,
        Kind::Histogram,
        Some(Unit::Seconds),
        "Duration of one load of an aggregate's current state, by snapshot use.",
    ),
    (
        CONFLICTS_TOTAL,
        Kind::Counter,
        None,
        "Appends of commands refused because another writer appended first.",
    ),
    (
        COMMAND_RETRIES_TOTAL,
        Kind::Counter,
        None,
        "Commands run again after a conflict.",
    ),
    (
        IDEMPOTENT_REPLAYS_TOTAL,
        Kind::Counter,
        None,
        "Commands answered with the original outcome of their idempotency key.",
    ),
    (
        SNAPSHOT_SAVES_TOTAL,
        Kind::Counter,
        None,
        "Snapshots saved by commands.",
    ),
    (
        SNAPSHOT_MISSES_TOTAL,
        Kind::Counter,
        None,
        "Loads of long streams that found no usable snapshot, by reason.",
    ),
    (
        CACHE_TOTAL,
        Kind::Counter,
        None,
        "Aggregate cache look-ups of commands: hit, miss, stale.",
    ),
    (
        PROJECTION_EVENTS_TOTAL,
        Kind::Counter,
        None,
        "Events of committed projection batches, handled or skipped.",
    ),
    (
        PROJECTION_BATCH_DURATION_SECONDS,
        Kind::Histogram,
        Some(Unit::Seconds),
        "Duration of one committed projection batch.",
    ),
    (
        PROJECTION_CHECKPOINT_POSITION,
        Kind::Gauge,
        None,
        "Global sequence number of the projection's checkpoint.",
    ),
    (
        PROJECTION_LAG_EVENTS,
        Kind::Gauge,
        Some(Unit::Count),
        "Estimated events between the projection's checkpoint and the head of the log.",
    ),
    (
        PROJECTION_LAG_SECONDS,
        Kind::Gauge,
        Some(Unit::Seconds),
        "Upper bound of the age of the oldest event the projection has not handled.",
    ),
    (
        PROJECTION_ERRORS_TOTAL,
        Kind::Counter,
        None,
        "Failed projection batches, by what the error policy did.",
    ),
    (
        PROJECTION_LOCK_HELD,
        Kind::Gauge,
        None,
        "1 while the runner holds the projection's lock.",
    ),
    (
        PG_OLDEST_OPEN_TRANSACTION_SECONDS,
        Kind::Gauge,
        Some(Unit::Seconds),
        "Age of the oldest open writing transaction, which holds back readers of the global log.",
    ),
    (
        PG_POOL_CONNECTIONS,
        Kind::Gauge,
        Some(Unit::Count),
        "Connections of the PostgreSQL store's pool, in use or idle.",
    ),
];

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// The names of every metric esrs records, in the order of [the table](self#every-metric).
pub fn names() -> impl ExactSizeIterator<Item = &'static str> {
    DESCRIPTIONS.iter().map(|(name, ..)| *name)
}

/// Gives the installed recorder the help text and unit of every metric esrs records (the
/// `# HELP` lines of a Prometheus scrape). Call it once, after installing the recorder;
/// without a recorder it does nothing.
pub fn describe() {
    ::metrics::with_recorder(|recorder| {
        for &(name, kind, unit, help) in DESCRIPTIONS {
            let name = ::metrics::KeyName::from_const_str(name);
            let help = SharedString::const_str(help);
            match kind {
                Kind::Counter => recorder.describe_counter(name, unit, help),
                Kind::Gauge => recorder.describe_gauge(name, unit, help),
                Kind::Histogram => recorder.describe_histogram(name, unit, help),
            }
        }
    });
}

/// The metadata of every measurement: esrs's target, at the `INFO` level.
static METADATA: Metadata<'static> = Metadata::new("esrs", Level::INFO, Some(module_path!()));

// The measurements go through the current recorder directly (what the `metrics` macros
// expand to), with keys built from `&'static` parts: nothing is allocated, with or without
// a recorder.

pub(crate) fn increment(key: &Key, by: u64) {
    ::metrics::with_recorder(|recorder| recorder.register_counter(key, &METADATA).increment(by));
}

pub(crate) fn set(key: &Key, value: f64) {
    ::metrics::with_recorder(|recorder| recorder.register_gauge(key, &METADATA).set(value));
}

pub(crate) fn record(key: &Key, value: f64) {
    ::metrics::with_recorder(|recorder| recorder.register_histogram(key, &METADATA).record(value));
}

/// A label known at compile time.
const fn label(key: &'static str, value: &'static str) -> Label {
    Label::from_static_parts(key, value)
}

/// The outcome of one append, as the `outcome` label of `esrs_append_duration_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AppendResult {
    /// The events were written (also an append of no events).
    Appended,
    /// The original outcome of the idempotency key was returned: nothing was written.
    Deduplicated,
    /// The expected version was stale: [`Error::Conflict`](crate::Error::Conflict).
    Conflict,
    /// Any other error.
    Error,
}

impl AppendResult {
    /// The outcome of an append that answered `result`.
    pub fn of(result: &Result<AppendOutcome>) -> Self {
        match result {
            Ok(outcome) if outcome.deduplicated => Self::Deduplicated,
            Ok(_) => Self::Appended,
            Err(crate::Error::Conflict(_)) => Self::Conflict,
            Err(_) => Self::Error,
        }
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Appended => "appended",
            Self::Deduplicated => "deduplicated",
            Self::Conflict => "conflict",
            Self::Error => "error",
        }
    }
}

/// The append metrics of one kind of store (`esrs_append_duration_seconds`,
/// `esrs_append_events`, `esrs_payload_bytes`), for store implementors: a store keeps one in
/// a `static`, so that its keys are built at compile time, and records every append with it.
///
/// ```
/// use esrs_core::metrics::{AppendMetrics, AppendResult};
/// use std::time::Duration;
///
/// static METRICS: AppendMetrics = AppendMetrics::new("mystore");
///
/// METRICS.record(AppendResult::Appended, 2, Duration::from_micros(250));
/// METRICS.record_payloads([120, 80]);
/// ```
#[derive(Debug)]
pub struct AppendMetrics {
    store: [Label; 1],
    appended: [Label; 2],
    deduplicated: [Label; 2],
    conflict: [Label; 2],
    error: [Label; 2],
}

impl AppendMetrics {
    /// The metrics of the store labelled `store`.
    pub const fn new(store: &'static str) -> Self {
        Self {
            store: [label("store", store)],
            appended: [label("store", store), label("outcome", "appended")],
            deduplicated: [label("store", store), label("outcome", "deduplicated")],
            conflict: [label("store", store), label("outcome", "conflict")],
            error: [label("store", store), label("outcome", "error")],
        }
    }

    /// Records one append: how long it took, and for a written one, its number of events.
    pub fn record(&'static self, result: AppendResult, events: usize, elapsed: Duration) {
        let labels: &'static [Label] = match result {
            AppendResult::Appended => &self.appended,
            AppendResult::Deduplicated => &self.deduplicated,
            AppendResult::Conflict => &self.conflict,
            AppendResult::Error => &self.error,
        };
        record(
            &Key::from_static_parts(APPEND_DURATION_SECONDS, labels),
            elapsed.as_secs_f64(),
        );
        if result == AppendResult::Appended {
            record(
                &Key::from_static_parts(APPEND_EVENTS, &self.store),
                events as f64,
            );
        }
    }

    /// Records the payload sizes, in bytes, of the events an append wrote.
    pub fn record_payloads(&'static self, sizes: impl IntoIterator<Item = usize>) {
        let key = Key::from_static_parts(PAYLOAD_BYTES, &self.store);
        ::metrics::with_recorder(|recorder| {
            let histogram = recorder.register_histogram(&key, &METADATA);
            for size in sizes {
                histogram.record(size as f64);
            }
        });
    }
}

/// The keys of the metrics of aggregate `A`, labelled with its name, built at compile time.
pub(crate) struct AggregateKeys<A>(std::marker::PhantomData<A>);

impl<A: Aggregate> AggregateKeys<A> {
    const AGGREGATE: &'static [Label] = &[label("aggregate", A::NAME)];
    const LOAD_HIT: &'static [Label] = &[label("aggregate", A::NAME), label("snapshot", "hit")];
    const LOAD_MISS: &'static [Label] = &[label("aggregate", A::NAME), label("snapshot", "miss")];
    const LOAD_NONE: &'static [Label] = &[label("aggregate", A::NAME), label("snapshot", "none")];
    const MISS_ABSENT: &'static [Label] = &[label("aggregate", A::NAME), label("reason", "absent")];
    const MISS_UNDECODABLE: &'static [Label] =
        &[label("aggregate", A::NAME), label("reason", "undecodable")];
    const CACHE_HIT: &'static [Label] = &[label("aggregate", A::NAME), label("result", "hit")];
    const CACHE_MISS: &'static [Label] = &[label("aggregate", A::NAME), label("result", "miss")];
    const CACHE_STALE: &'static [Label] = &[label("aggregate", A::NAME), label("result", "stale")];

    pub(crate) fn load(snapshot: SnapshotUse, elapsed: Duration) {
        let labels = match snapshot {
            SnapshotUse::Hit => Self::LOAD_HIT,
            SnapshotUse::Miss => Self::LOAD_MISS,
            SnapshotUse::None => Self::LOAD_NONE,
        };
        record(
            &Key::from_static_parts(LOAD_DURATION_SECONDS, labels),
            elapsed.as_secs_f64(),
        );
    }

    pub(crate) fn snapshot_miss(undecodable: bool) {
        let labels = if undecodable {
            Self::MISS_UNDECODABLE
        } else {
            Self::MISS_ABSENT
        };
        increment(&Key::from_static_parts(SNAPSHOT_MISSES_TOTAL, labels), 1);
    }

    pub(crate) fn conflict() {
        increment(&Key::from_static_parts(CONFLICTS_TOTAL, Self::AGGREGATE), 1);
    }

    pub(crate) fn retry() {
        increment(
            &Key::from_static_parts(COMMAND_RETRIES_TOTAL, Self::AGGREGATE),
            1,
        );
    }

    pub(crate) fn replay() {
        increment(
            &Key::from_static_parts(IDEMPOTENT_REPLAYS_TOTAL, Self::AGGREGATE),
            1,
        );
    }

    pub(crate) fn snapshot_saved() {
        increment(
            &Key::from_static_parts(SNAPSHOT_SAVES_TOTAL, Self::AGGREGATE),
            1,
        );
    }

    pub(crate) fn cache(result: CacheResult) {
        let labels = match result {
            CacheResult::Hit => Self::CACHE_HIT,
            CacheResult::Miss => Self::CACHE_MISS,
            CacheResult::Stale => Self::CACHE_STALE,
        };
        increment(&Key::from_static_parts(CACHE_TOTAL, labels), 1);
    }
}

/// Whether a load used a snapshot: the `snapshot` label of `esrs_load_duration_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SnapshotUse {
    Hit,
    Miss,
    None,
}

/// The `result` label of `esrs_cache_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheResult {
    Hit,
    Miss,
    Stale,
}

/// The keys of a projection runner's metrics, labelled with the projection's name: built
/// once per runner (the name is only known at run time), then used without allocating.
#[derive(Debug)]
pub(crate) struct ProjectionKeys {
    handled: Key,
    skipped: Key,
    batch_duration: Key,
    checkpoint: Key,
    lag_events: Key,
    lag_seconds: Key,
    errors_retry: Key,
    errors_stop: Key,
    lock_held: Key,
}

impl ProjectionKeys {
    pub(crate) fn new(projection: &str) -> Self {
        let name = || Label::new("projection", projection.to_owned());
        let key = |metric: &'static str| Key::from_parts(metric, vec![name()]);
        let keyed = |metric: &'static str, key: &'static str, value: &'static str| {
            Key::from_parts(metric, vec![name(), label(key, value)])
        };
        Self {
            handled: keyed(PROJECTION_EVENTS_TOTAL, "result", "handled"),
            skipped: keyed(PROJECTION_EVENTS_TOTAL, "result", "skipped"),
            batch_duration: key(PROJECTION_BATCH_DURATION_SECONDS),
            checkpoint: key(PROJECTION_CHECKPOINT_POSITION),
            lag_events: key(PROJECTION_LAG_EVENTS),
            lag_seconds: key(PROJECTION_LAG_SECONDS),
            errors_retry: keyed(PROJECTION_ERRORS_TOTAL, "policy", "retry"),
            errors_stop: keyed(PROJECTION_ERRORS_TOTAL, "policy", "stop"),
            lock_held: key(PROJECTION_LOCK_HELD),
        }
    }

    /// A committed batch: its events, its duration and the new checkpoint.
    pub(crate) fn batch(&self, handled: u64, skipped: u64, elapsed: Duration, checkpoint: u64) {
        if handled > 0 {
            increment(&self.handled, handled);
        }
        if skipped > 0 {
            increment(&self.skipped, skipped);
        }
        record(&self.batch_duration, elapsed.as_secs_f64());
        set(&self.checkpoint, checkpoint as f64);
    }

    /// The lag after a batch, or zero once caught up.
    pub(crate) fn lag(&self, events: Option<u64>, age: Duration) {
        if let Some(events) = events {
            set(&self.lag_events, events as f64);
        }
        set(&self.lag_seconds, age.as_secs_f64());
    }

    pub(crate) fn error(&self, retried: bool) {
        let key = if retried {
            &self.errors_retry
        } else {
            &self.errors_stop
        };
        increment(key, 1);
    }

    pub(crate) fn lock_held(&self, held: bool) {
        set(&self.lock_held, if held { 1.0 } else { 0.0 });
    }
}
