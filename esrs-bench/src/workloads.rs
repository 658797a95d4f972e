//! The workloads, and their esrs side, generic over the event store: the same code runs on
//! PostgreSQL and on the in-memory store.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use esrs_core::store::{AppendRequest, NewEvent, Snapshot};
use esrs_core::{EventStore, ExpectedVersion, Position, Repository, StreamId, Version};
use futures_util::TryStreamExt;
use serde_json::value::RawValue;

use crate::domain::{Account, AccountEvent, Decide, SnapshottedAccount, generated};
use crate::measure::{Latencies, Report, Rng, timed};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A boxed future of one counted operation.
pub(crate) type BoxFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), BoxError>> + 'a>>;

/// Fails with `message` unless `condition` holds: the workloads check their own results.
pub(crate) fn ensure(condition: bool, message: impl Into<String>) -> Result<(), BoxError> {
    if condition {
        Ok(())
    } else {
        Err(message.into().into())
    }
}

/// A command workload: W1 or W2.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spec {
    pub(crate) name: &'static str,
    pub(crate) clients: u64,
    pub(crate) commands: u64,
    pub(crate) streams: u64,
    /// Clients pick streams at random (W2) rather than in turn (W1).
    pub(crate) random: bool,
}

/// W1: one client, 5,000 commands over 100 streams.
pub(crate) const W1: Spec = Spec {
    name: "W1",
    clients: 1,
    commands: 5_000,
    streams: 100,
    random: false,
};

/// W2: 8 concurrent clients, 20,000 commands over 1,000 streams.
pub(crate) const W2: Spec = Spec {
    name: "W2",
    clients: 8,
    commands: 20_000,
    streams: 1_000,
    random: true,
};

/// W3: the long stream's length, and the loads timed.
pub(crate) const W3_LONG: u64 = 10_000;
pub(crate) const W3_SHORT: u64 = 10;
pub(crate) const W3_LOADS: u64 = 20;
/// Untimed loads before the timed ones: statements get prepared, pools fill.
pub(crate) const WARM_UP: u64 = 5;

/// W4: 100,000 events over 1,000 streams.
pub(crate) const W4_STREAMS: u64 = 1_000;
pub(crate) const W4_PER_STREAM: u64 = 100;

/// The batch append: 20 appends of 1,000 events.
pub(crate) const BATCHES: u64 = 20;
pub(crate) const BATCH_EVENTS: u64 = 1_000;

impl Spec {
    pub(crate) fn per_client(&self) -> u64 {
        self.commands / self.clients
    }

    pub(crate) fn stream_for(&self, client: u64, i: u64, rng: &mut Rng) -> u64 {
        if self.random {
            rng.below(self.streams)
        } else {
            (client * self.per_client() + i) % self.streams
        }
    }
}

/// A report from a run's latencies.
pub(crate) fn done(
    workload: &str,
    implementation: &str,
    unit: &str,
    operations: u64,
    seconds: f64,
    mut latencies: Latencies,
) -> Report {
    Report {
        workload: workload.to_owned(),
        implementation: implementation.to_owned(),
        unit: unit.to_owned(),
        operations,
        seconds,
        p50_ms: latencies.percentile_ms(50.0),
        p99_ms: latencies.percentile_ms(99.0),
        peak_mib: None,
        conflicts: None,
        note: None,
        spread: None,
    }
}

fn id(s: impl AsRef<str>) -> Result<StreamId, BoxError> {
    Ok(StreamId::new(s)?)
}

/// W1 and W2 through [`Repository::execute`]: load (or cache hit), decide, append, with
/// conflicts retried. Conflicts are counted as the command's extra invocations.
pub(crate) async fn commands<A: Decide, S: EventStore>(
    repo: Arc<Repository<A, S>>,
    spec: Spec,
    implementation: &str,
) -> Result<Report, BoxError> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..spec.clients {
        let repo = repo.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Latencies::with_capacity(spec.per_client() as usize);
            let mut conflicts = 0;
            let mut rng = Rng::new(client + 1);
            for i in 0..spec.per_client() {
                let stream = id(spec.stream_for(client, i, &mut rng).to_string())?;
                let attempts = Arc::new(AtomicU64::new(0));
                let counter = attempts.clone();
                let on = stream.clone();
                let command = move |account: &A| {
                    counter.fetch_add(1, Ordering::Relaxed);
                    Ok::<_, Infallible>(account.decide_on(&on))
                };
                timed(
                    &mut latencies,
                    repo.execute(&stream, command).retries(1_000),
                )
                .await?;
                conflicts += attempts.load(Ordering::Relaxed) - 1;
            }
            Ok::<_, BoxError>((latencies, conflicts))
        }));
    }
    let mut latencies = Latencies::default();
    let mut conflicts = 0;
    for task in tasks {
        let (l, c) = task.await??;
        latencies.extend(l);
        conflicts += c;
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut report = done(
        spec.name,
        implementation,
        "cmd",
        spec.commands,
        seconds,
        latencies,
    );
    report.conflicts = Some(conflicts);
    if let Some(stats) = repo.cache_stats() {
        report.note = Some(format!(
            "cache: {} hits, {} misses, {} stale",
            stats.hits, stats.misses, stats.stale
        ));
    }
    Ok(report)
}

/// `count` generated events from the `first`-th, as esrs appends them.
fn generated_events(first: u64, count: u64) -> Result<Vec<NewEvent>, BoxError> {
    (first..first + count)
        .map(|i| {
            let (name, version, json) = generated(i);
            Ok(NewEvent::new(name, version, RawValue::from_string(json)?))
        })
        .collect()
}

/// Appends `count` generated events to `stream`, 1,000 per append.
async fn append_generated<S: EventStore>(
    store: &S,
    stream: &StreamId,
    count: u64,
) -> Result<(), BoxError> {
    let mut written = 0;
    while written < count {
        let n = (count - written).min(1_000);
        store
            .append(AppendRequest::new(
                stream.clone(),
                ExpectedVersion::Exact(written),
                generated_events(written, n)?,
            ))
            .await?;
        written += n;
    }
    Ok(())
}

/// W3 set-up: the stream `account-long` of `events` events and, when `snapshot`, a snapshot
/// at its last version (what the repository leaves behind with a snapshot every 100 events).
pub(crate) async fn prepare_long_stream<S: EventStore>(
    store: &S,
    events: u64,
    snapshot: bool,
) -> Result<(), BoxError> {
    let stream = id("account-long")?;
    append_generated(store, &stream, events).await?;
    if snapshot {
        let mut state = SnapshottedAccount::default();
        let mut version = 0;
        let mut events = store.read_stream(&stream, 1, Version::MAX);
        while let Some(recorded) = events.try_next().await? {
            state.0.on(&recorded.decode::<AccountEvent>()?);
            version = recorded.version;
        }
        drop(events);
        let payload =
            esrs_core::Aggregate::encode_snapshot(&state).ok_or("the aggregate snapshots")??;
        store
            .save_snapshot(Snapshot::new(
                stream,
                version,
                <SnapshottedAccount as esrs_core::Aggregate>::SNAPSHOT_KEY,
                payload,
            ))
            .await?;
    }
    Ok(())
}

/// W3: times `loads` loads of `account-long` through the repository.
pub(crate) async fn loads<S: EventStore>(
    store: S,
    workload: &str,
    implementation: &str,
    events: u64,
    loads: u64,
    snapshot: bool,
) -> Result<Report, BoxError> {
    let long = id("long")?;
    let mut latencies = Latencies::with_capacity(loads as usize);
    let started;
    if snapshot {
        let repo = Repository::<SnapshottedAccount, _>::new(store);
        for _ in 0..WARM_UP {
            ensure(repo.load(&long).await?.version == events, "prepared")?;
        }
        started = Instant::now();
        for _ in 0..loads {
            std::hint::black_box(timed(&mut latencies, repo.load(&long)).await?);
        }
    } else {
        let repo = Repository::<Account, _>::new(store);
        for _ in 0..WARM_UP {
            ensure(repo.load(&long).await?.version == events, "prepared")?;
        }
        started = Instant::now();
        for _ in 0..loads {
            std::hint::black_box(timed(&mut latencies, repo.load(&long)).await?);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(done(
        workload,
        implementation,
        "load",
        loads,
        seconds,
        latencies,
    ))
}

/// W4 set-up: `streams` streams of `per_stream` events each.
pub(crate) async fn prepare_log<S: EventStore>(
    store: &S,
    streams: u64,
    per_stream: u64,
) -> Result<(), BoxError> {
    for s in 0..streams {
        append_generated(store, &id(format!("account-{s}"))?, per_stream).await?;
    }
    Ok(())
}

/// W4: the whole log read in position order, every event decoded and folded into a read
/// model (the balance of every account).
pub(crate) async fn replay<S: EventStore>(
    store: &S,
    implementation: &str,
    expected: u64,
) -> Result<Report, BoxError> {
    let started = Instant::now();
    let mut balances: HashMap<StreamId, Account> = HashMap::new();
    let mut events = store.read_all(Position::START);
    let mut count = 0u64;
    while let Some(recorded) = events.try_next().await? {
        let event = recorded.decode::<AccountEvent>()?;
        balances.entry(recorded.stream).or_default().on(&event);
        count += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    ensure(
        count == expected,
        format!("replayed {count} events, expected {expected}"),
    )?;
    std::hint::black_box(&balances);
    Ok(done(
        "W4 replay",
        implementation,
        "event",
        count,
        seconds,
        Latencies::default(),
    ))
}

/// W4's read model: the balance of every account.
#[derive(Debug, Default)]
pub(crate) struct Balances(HashMap<StreamId, Account>);

impl esrs_core::Projection for Balances {
    type Event = AccountEvent;

    fn name(&self) -> &str {
        "balances"
    }

    async fn handle(
        &mut self,
        _tx: &mut (),
        event: AccountEvent,
        envelope: &esrs_core::RecordedEvent,
    ) -> Result<(), esrs_core::BoxError> {
        match self.0.get_mut(&envelope.stream) {
            Some(account) => account.on(&event),
            None => self
                .0
                .entry(envelope.stream.clone())
                .or_default()
                .on(&event),
        }
        Ok(())
    }
}

/// W4 through the projection runner: catch up from the start with in-memory checkpoints.
pub(crate) async fn project<S: EventStore>(
    store: S,
    implementation: &str,
    expected: u64,
) -> Result<Report, BoxError> {
    let started = Instant::now();
    let mut runner = esrs_core::ProjectionRunner::new(
        store,
        esrs_core::projection::InMemoryCheckpoints::new(),
        Balances::default(),
    );
    runner.catch_up().await?;
    let seconds = started.elapsed().as_secs_f64();
    let balances = runner.into_projection();
    let count: u64 = balances.0.values().map(|a| a.operations).sum();
    ensure(
        count == expected,
        format!("projected {count} events, expected {expected}"),
    )?;
    Ok(done(
        "W4 replay",
        implementation,
        "event",
        count,
        seconds,
        Latencies::default(),
    ))
}

/// The events of one batch, as commands produce them: typed, encoded by esrs.
pub(crate) fn batch_events(count: u64) -> Vec<AccountEvent> {
    let mut account = Account::default();
    (0..count)
        .map(|_| {
            let event = account.decide();
            account.on(&event);
            event
        })
        .collect()
}

/// The batch append: `batches` appends of `events` events, each in one call, to fresh
/// streams; encoding included.
pub(crate) async fn batches<S: EventStore>(
    store: &S,
    implementation: &str,
    batches: u64,
    events: u64,
) -> Result<Report, BoxError> {
    let typed = batch_events(events);
    let append = |stream: StreamId| {
        let encoded = typed
            .iter()
            .map(NewEvent::encode)
            .collect::<Result<Vec<_>, _>>();
        async move {
            let outcome = store
                .append(AppendRequest::new(
                    stream,
                    ExpectedVersion::NoStream,
                    encoded?,
                ))
                .await?;
            ensure(
                outcome.last_version == events,
                "the whole batch was written",
            )
        }
    };
    append(id("account-warmup")?).await?;
    let mut latencies = Latencies::with_capacity(batches as usize);
    let started = Instant::now();
    for b in 0..batches {
        timed(&mut latencies, append(id(format!("account-batch-{b}"))?)).await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(done(
        "batch 1,000",
        implementation,
        "event",
        batches * events,
        seconds,
        latencies,
    ))
}

/// One event appended to a new stream, for counting round trips.
pub(crate) async fn append_one<S: EventStore>(store: &S, stream: String) -> Result<(), BoxError> {
    let event = NewEvent::encode(&Account::default().decide())?;
    store
        .append(AppendRequest::new(
            id(stream)?,
            ExpectedVersion::NoStream,
            vec![event],
        ))
        .await?;
    Ok(())
}

/// One command through the repository, for counting round trips.
pub(crate) async fn execute_one<S: EventStore>(
    repo: &Repository<Account, S>,
    stream: &str,
) -> Result<(), BoxError> {
    repo.execute(&id(stream)?, |a: &Account| Ok::<_, Infallible>(a.decide()))
        .await?;
    Ok(())
}

/// One batch appended to a new stream, for counting round trips.
pub(crate) async fn batches_one<S: EventStore>(
    store: &S,
    stream: String,
    events: u64,
) -> Result<(), BoxError> {
    let encoded = batch_events(events)
        .iter()
        .map(NewEvent::encode)
        .collect::<Result<Vec<_>, _>>()?;
    store
        .append(AppendRequest::new(
            id(stream)?,
            ExpectedVersion::NoStream,
            encoded,
        ))
        .await?;
    Ok(())
}

/// W3 without the repository: the store's read of the stream, rows counted, not decoded.
pub(crate) async fn read_only<S: EventStore>(
    store: S,
    workload: &str,
    events: u64,
    loads: u64,
) -> Result<Report, BoxError> {
    let stream = id("account-long")?;
    let read = async || {
        let mut rows = store.read_stream(&stream, 1, Version::MAX);
        let mut n = 0u64;
        while let Some(e) = rows.try_next().await? {
            std::hint::black_box(&e);
            n += 1;
        }
        ensure(n == events, "the whole stream was read")
    };
    for _ in 0..WARM_UP {
        read().await?;
    }
    let mut latencies = Latencies::with_capacity(loads as usize);
    let started = Instant::now();
    for _ in 0..loads {
        timed(&mut latencies, read()).await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(done(
        workload,
        "esrs read_stream only",
        "load",
        loads,
        seconds,
        latencies,
    ))
}

/// W5: 1,000,000 events of 10 names over 1,000 streams.
pub(crate) const W5_EVENTS: u64 = 1_000_000;
/// W5: the names of its events, `Event0` to `Event9`, one event in ten of each.
pub(crate) const W5_NAMES: u64 = 10;
/// W5: the one name its projection handles.
pub(crate) const W5_HANDLED: &str = "Event3";
/// W5: skipped events appended after the catch-up, before the restart.
pub(crate) const W5_TAIL: u64 = 100_000;

/// W5 set-up in one statement: event `g` of `W5_EVENTS` is `Event{g % 10}` in stream
/// `account-{g % 1000}`, payload `{"amount": …}`; `table` is esrs's events table or the raw
/// baseline's (same columns). `first` numbers the events; `names` picks their names (a tail
/// of other names than the handled one when `skip_handled`).
pub(crate) fn w5_insert(table: &str, first: u64, count: u64, skip_handled: bool) -> String {
    let name = if skip_handled {
        // Event0, 1, 2, 4, …: never the handled name.
        "'Event' || (CASE WHEN g % 10 = 3 THEN 4 ELSE g % 10 END)"
    } else {
        "'Event' || (g % 10)"
    };
    format!(
        "INSERT INTO {table} (stream_id, version, name, event_version, payload) \
         SELECT 'account-' || (g % 1000), g / 1000 + 1, {name}, 1, \
                ('{{\"amount\":' || (g % 7 + 10) || '}}')::json \
         FROM generate_series({first}::bigint, {last}::bigint) g",
        last = first + count - 1,
    )
}

/// W5's read model: the sum of the amounts of `Event3` per stream, reading only `Event3`
/// (`filtered`) or every event, skipping the others in the client.
#[derive(Debug, Default)]
pub(crate) struct Quiet {
    filtered: bool,
    sums: HashMap<StreamId, i64>,
    handled: u64,
}

impl esrs_core::Projection for Quiet {
    type Event = serde_json::Value;

    fn name(&self) -> &str {
        "quiet"
    }

    fn handles(&self, name: &str) -> bool {
        name == W5_HANDLED
    }

    fn filter(&self) -> esrs_core::store::LogFilter {
        if self.filtered {
            esrs_core::store::LogFilter::names([W5_HANDLED])
        } else {
            esrs_core::store::LogFilter::all()
        }
    }

    async fn handle(
        &mut self,
        _tx: &mut (),
        event: serde_json::Value,
        envelope: &esrs_core::RecordedEvent,
    ) -> Result<(), esrs_core::BoxError> {
        let amount = event["amount"].as_i64().ok_or("an amount")?;
        match self.sums.get_mut(&envelope.stream) {
            Some(sum) => *sum += amount,
            None => {
                self.sums.insert(envelope.stream.clone(), amount);
            }
        }
        self.handled += 1;
        Ok(())
    }
}

/// W5 through the projection runner: catch up from the start, then (untimed) append
/// [`W5_TAIL`] events of other names with `append_tail`, and time a restart of the runner from
/// its checkpoint, which has nothing new to handle (noted).
pub(crate) async fn quiet<S: EventStore + Clone>(
    store: S,
    filtered: bool,
    append_tail: impl std::future::Future<Output = Result<(), BoxError>>,
) -> Result<Report, BoxError> {
    let checkpoints = esrs_core::projection::InMemoryCheckpoints::new();
    let projection = Quiet {
        filtered,
        ..Quiet::default()
    };
    let started = Instant::now();
    let mut runner =
        esrs_core::ProjectionRunner::new(store.clone(), checkpoints.clone(), projection);
    let checkpoint = runner.catch_up().await?;
    let seconds = started.elapsed().as_secs_f64();
    let expected = W5_EVENTS / W5_NAMES;
    let handled = runner.projection().handled;
    ensure(
        handled == expected,
        format!("handled {handled} events, expected {expected}"),
    )?;
    drop(runner);

    append_tail.await?;
    let restarted = Instant::now();
    let mut runner = esrs_core::ProjectionRunner::new(
        store,
        checkpoints,
        Quiet {
            filtered,
            ..Quiet::default()
        },
    );
    let moved = runner.catch_up().await?;
    let restart = restarted.elapsed();
    ensure(runner.projection().handled == 0, "nothing new to handle")?;
    ensure(moved > checkpoint, "the checkpoint moved past the tail")?;
    let mut report = done(
        "W5 1 name of 10",
        if filtered {
            "esrs, filtered"
        } else {
            "esrs, unfiltered"
        },
        "event",
        handled,
        seconds,
        Latencies::default(),
    );
    report.note = Some(format!(
        "restart over {W5_TAIL} skipped events: {:.1} ms",
        restart.as_secs_f64() * 1e3
    ));
    Ok(report)
}
