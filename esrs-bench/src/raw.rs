//! The baseline: the same work written directly with sqlx against an equivalent events
//! table. A load is one SELECT of the stream folded with a hand-written match; an append is
//! one INSERT whose expected-version check is the unique (stream, version) constraint; a
//! replay is one streamed SELECT in position order.
//!
//! Each client holds one connection for its whole run: sqlx's pool pings a connection when
//! it is returned (and, by default, before it is handed out), a round trip per checkout that
//! a hand-tuned program avoids.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use futures_util::TryStreamExt;
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::{Executor, Row};

use crate::domain::{Account, AccountEvent, decode_by_hand, encode_by_hand, generated};
use crate::measure::{Latencies, Report, Rng, timed};
use crate::workloads::{BoxError, Spec, WARM_UP, batch_events, done, ensure};

/// The same columns, keys and indexes as the esrs PostgreSQL store's events table.
const SCHEMA: &str = "
CREATE TABLE raw_events (
    sequence bigint GENERATED ALWAYS AS IDENTITY,
    transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
    stream_id text NOT NULL,
    version bigint NOT NULL,
    name text NOT NULL,
    event_version integer NOT NULL,
    payload json NOT NULL,
    metadata jsonb,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    event_id uuid NOT NULL DEFAULT gen_random_uuid(),
    PRIMARY KEY (stream_id, version)
);
CREATE UNIQUE INDEX raw_events_global_order ON raw_events (transaction_id, sequence);
";

const LOAD: &str = "SELECT version, name, event_version, payload::text FROM raw_events \
                    WHERE stream_id = $1 ORDER BY version";
const APPEND: &str = "INSERT INTO raw_events (stream_id, version, name, event_version, payload) \
                      VALUES ($1, $2, $3, $4, $5::json)";
const APPEND_BATCH: &str = "INSERT INTO raw_events (stream_id, version, name, event_version, payload) \
     SELECT $1, v, n, ev, p::json FROM UNNEST($2::bigint[], $3::text[], $4::int[], $5::text[]) \
     AS t(v, n, ev, p)";
/// W4: the whole envelope a projection's handler receives (position, stream, version,
/// name, schema version, payload, metadata, recorded time, event id), in commit-safe order
/// (below the oldest running transaction), as `PgStore::read_all` reads it.
const REPLAY: &str = "SELECT sequence, transaction_id, version, name, event_version, payload::text, \
                      metadata, recorded_at, event_id, stream_id FROM raw_events \
                      WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
                      ORDER BY transaction_id, sequence";
/// W4 as the baseline read it before it read the whole envelope: the five columns a fold
/// needs, in global order, without the commit-safe bound.
const REPLAY_FOLD_COLUMNS: &str = "SELECT stream_id, version, name, event_version, payload::text \
                                   FROM raw_events ORDER BY transaction_id, sequence";

/// Creates the table.
pub(crate) async fn create_schema(conn: &mut PgConnection) -> Result<(), BoxError> {
    conn.execute(SCHEMA).await?;
    Ok(())
}

/// One SELECT of the stream, folded.
async fn load(conn: &mut PgConnection, stream: &str) -> Result<(Account, i64), BoxError> {
    let mut rows = sqlx::query(LOAD).bind(stream).fetch(conn);
    let mut account = Account::default();
    let mut version = 0;
    while let Some(row) = rows.try_next().await? {
        version = row.try_get::<i64, _>(0)?;
        let name: &str = row.try_get(1)?;
        let event_version: i32 = row.try_get(2)?;
        let payload: &str = row.try_get(3)?;
        account.on(&decode_by_hand(name, event_version, payload)?);
    }
    Ok((account, version))
}

/// One INSERT; `Ok(false)` when another writer took the version.
async fn append(
    conn: &mut PgConnection,
    stream: &str,
    version: i64,
    account: &Account,
) -> Result<bool, BoxError> {
    let (name, event_version, payload) = encode_by_hand(&account.decide());
    let inserted = sqlx::query(APPEND)
        .bind(stream)
        .bind(version + 1)
        .bind(name)
        .bind(event_version)
        .bind(payload)
        .execute(conn)
        .await;
    match inserted {
        Ok(_) => Ok(true),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Load, decide, append; reload and retry on a conflict. Returns the conflicts met.
async fn command(conn: &mut PgConnection, stream: &str) -> Result<u64, BoxError> {
    let mut conflicts = 0;
    loop {
        let (account, version) = load(conn, stream).await?;
        if append(conn, stream, version, &account).await? {
            return Ok(conflicts);
        }
        conflicts += 1;
    }
}

/// Appends `count` generated events to `stream` in one statement.
async fn append_generated(
    conn: &mut PgConnection,
    stream: &str,
    first: u64,
    count: u64,
) -> Result<(), BoxError> {
    let mut versions = Vec::with_capacity(count as usize);
    let mut names = Vec::with_capacity(count as usize);
    let mut event_versions = Vec::with_capacity(count as usize);
    let mut payloads = Vec::with_capacity(count as usize);
    for i in first..first + count {
        let (name, version, payload) = generated(i);
        versions.push(i as i64 + 1);
        names.push(name);
        event_versions.push(version as i32);
        payloads.push(payload);
    }
    sqlx::query(APPEND_BATCH)
        .bind(stream)
        .bind(versions)
        .bind(names)
        .bind(event_versions)
        .bind(payloads)
        .execute(conn)
        .await?;
    Ok(())
}

/// Load, decide, append with a pool checkout per query, as most programs use sqlx.
async fn command_pooled(pool: &PgPool, stream: &str) -> Result<u64, BoxError> {
    let mut conflicts = 0;
    loop {
        let (account, version) = load(&mut *pool.acquire().await?, stream).await?;
        if append(&mut *pool.acquire().await?, stream, version, &account).await? {
            return Ok(conflicts);
        }
        conflicts += 1;
    }
}

/// W1 and W2: `spec.clients` clients share `spec.commands` commands over `spec.streams`
/// streams. With `pooled`, every query checks a connection out of the pool (and sqlx pings
/// it when it is returned); otherwise each client holds one connection.
pub(crate) async fn commands(pool: &PgPool, spec: Spec, pooled: bool) -> Result<Report, BoxError> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..spec.clients {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = if pooled {
                None
            } else {
                Some(pool.acquire().await?)
            };
            let mut latencies = Latencies::with_capacity(spec.per_client() as usize);
            let mut conflicts = 0;
            let mut rng = Rng::new(client + 1);
            for i in 0..spec.per_client() {
                let stream = format!("account-{}", spec.stream_for(client, i, &mut rng));
                conflicts += match &mut conn {
                    Some(conn) => timed(&mut latencies, command(conn, &stream)).await?,
                    None => timed(&mut latencies, command_pooled(&pool, &stream)).await?,
                };
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
    let implementation = if pooled { "raw sqlx, pool" } else { "raw sqlx" };
    let mut report = done(
        spec.name,
        implementation,
        "cmd",
        spec.commands,
        seconds,
        latencies,
    );
    report.conflicts = Some(conflicts);
    Ok(report)
}

/// W3: writes a stream of `events` events, then times `loads` loads of it.
pub(crate) async fn prepare_long_stream(
    conn: &mut PgConnection,
    events: u64,
) -> Result<(), BoxError> {
    let mut written = 0;
    while written < events {
        let n = (events - written).min(1_000);
        append_generated(conn, "account-long", written, n).await?;
        written += n;
    }
    Ok(())
}

/// W3: times `loads` loads of the stream written by [`prepare_long_stream`].
pub(crate) async fn loads(
    conn: &mut PgConnection,
    name: &str,
    events: u64,
    loads: u64,
) -> Result<Report, BoxError> {
    // Warm up: the first execution prepares the statement.
    for _ in 0..WARM_UP {
        let (_, version) = load(conn, "account-long").await?;
        ensure(version as u64 == events, "the stream was prepared")?;
    }
    let mut latencies = Latencies::with_capacity(loads as usize);
    let started = Instant::now();
    for _ in 0..loads {
        let (account, _) = timed(&mut latencies, load(conn, "account-long")).await?;
        std::hint::black_box(account);
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(done(name, "raw sqlx", "load", loads, seconds, latencies))
}

/// W3 with a pool checkout per load, as most programs use sqlx.
pub(crate) async fn loads_pooled(
    pool: &PgPool,
    name: &str,
    events: u64,
    loads: u64,
) -> Result<Report, BoxError> {
    for _ in 0..WARM_UP {
        let (_, version) = load(&mut *pool.acquire().await?, "account-long").await?;
        ensure(version as u64 == events, "the stream was prepared")?;
    }
    let mut latencies = Latencies::with_capacity(loads as usize);
    let started = Instant::now();
    for _ in 0..loads {
        let loaded = timed(&mut latencies, async {
            load(&mut *pool.acquire().await?, "account-long").await
        })
        .await?;
        std::hint::black_box(loaded);
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(done(
        name,
        "raw sqlx, pool",
        "load",
        loads,
        seconds,
        latencies,
    ))
}

/// W4 set-up: `streams` streams of `per_stream` events each.
pub(crate) async fn prepare_log(
    conn: &mut PgConnection,
    streams: u64,
    per_stream: u64,
) -> Result<(), BoxError> {
    for s in 0..streams {
        append_generated(conn, &format!("account-{s}"), 0, per_stream).await?;
    }
    Ok(())
}

/// A `xid8` column, as a hand-written program decodes it (sqlx has no type for it): eight
/// big-endian bytes.
fn xid8(row: &sqlx::postgres::PgRow, index: usize) -> Result<u64, BoxError> {
    let bytes: [u8; 8] = row.try_get_raw(index)?.as_bytes()?.try_into()?;
    Ok(u64::from_be_bytes(bytes))
}

/// W4: one streamed SELECT of the whole log in commit-safe position order, every column of
/// the envelope decoded (metadata parsed when present), every payload decoded and folded
/// into a read model (the balance of every account).
pub(crate) async fn replay(conn: &mut PgConnection, expected: u64) -> Result<Report, BoxError> {
    let started = Instant::now();
    let mut balances: HashMap<Arc<str>, Account> = HashMap::new();
    let mut rows = sqlx::query(REPLAY).fetch(conn);
    let mut count = 0u64;
    let mut last = (0u64, 0i64);
    while let Some(row) = rows.try_next().await? {
        let sequence: i64 = row.try_get(0)?;
        let transaction = xid8(&row, 1)?;
        let _version: i64 = row.try_get(2)?;
        let name: &str = row.try_get(3)?;
        let event_version: i32 = row.try_get(4)?;
        let payload: &str = row.try_get(5)?;
        let metadata: Option<sqlx::types::Json<esrs_core::Metadata>> = row.try_get(6)?;
        let recorded_at: sqlx::types::chrono::DateTime<sqlx::types::chrono::Utc> =
            row.try_get(7)?;
        let id: sqlx::types::Uuid = row.try_get(8)?;
        let stream: &str = row.try_get(9)?;
        std::hint::black_box((&metadata, recorded_at, id));
        last = (transaction, sequence);
        let event = decode_by_hand(name, event_version, payload)?;
        match balances.get_mut(stream) {
            Some(account) => account.on(&event),
            None => {
                let mut account = Account::default();
                account.on(&event);
                balances.insert(Arc::from(stream), account);
            }
        }
        count += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    ensure(
        count == expected,
        format!("replayed {count} events, expected {expected}"),
    )?;
    std::hint::black_box((&balances, last));
    Ok(done(
        "W4 replay",
        "raw sqlx",
        "event",
        count,
        seconds,
        Latencies::default(),
    ))
}

/// W4 reading only what the fold needs (stream, version, name, schema version, payload),
/// without the commit-safe bound: what the baseline measured before it read the whole
/// envelope, kept to show what the envelope costs.
pub(crate) async fn replay_fold_columns(
    conn: &mut PgConnection,
    expected: u64,
) -> Result<Report, BoxError> {
    let started = Instant::now();
    let mut balances: HashMap<Arc<str>, Account> = HashMap::new();
    let mut rows = sqlx::query(REPLAY_FOLD_COLUMNS).fetch(conn);
    let mut count = 0u64;
    while let Some(row) = rows.try_next().await? {
        let stream: &str = row.try_get(0)?;
        let _version: i64 = row.try_get(1)?;
        let name: &str = row.try_get(2)?;
        let event_version: i32 = row.try_get(3)?;
        let payload: &str = row.try_get(4)?;
        let event = decode_by_hand(name, event_version, payload)?;
        match balances.get_mut(stream) {
            Some(account) => account.on(&event),
            None => {
                let mut account = Account::default();
                account.on(&event);
                balances.insert(Arc::from(stream), account);
            }
        }
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
        "raw sqlx, 5 columns",
        "event",
        count,
        seconds,
        Latencies::default(),
    ))
}

/// Appends typed events to a new stream in one statement, encoding them by hand.
async fn append_typed(
    conn: &mut PgConnection,
    stream: &str,
    events: &[AccountEvent],
) -> Result<(), BoxError> {
    let mut versions = Vec::with_capacity(events.len());
    let mut names = Vec::with_capacity(events.len());
    let mut event_versions = Vec::with_capacity(events.len());
    let mut payloads = Vec::with_capacity(events.len());
    for (i, event) in events.iter().enumerate() {
        let (name, version, payload) = encode_by_hand(event);
        versions.push(i as i64 + 1);
        names.push(name);
        event_versions.push(version);
        payloads.push(payload);
    }
    let written = sqlx::query(APPEND_BATCH)
        .bind(stream)
        .bind(versions)
        .bind(names)
        .bind(event_versions)
        .bind(payloads)
        .execute(conn)
        .await?;
    ensure(
        written.rows_affected() == events.len() as u64,
        "the whole batch was written",
    )
}

/// The batch append: `batches` appends of `events` events, each in one statement, to fresh
/// streams; encoding included.
pub(crate) async fn batches(
    conn: &mut PgConnection,
    batches: u64,
    events: u64,
) -> Result<Report, BoxError> {
    let typed = batch_events(events);
    append_typed(conn, "account-warmup", &typed).await?;
    let mut latencies = Latencies::with_capacity(batches as usize);
    let started = Instant::now();
    for b in 0..batches {
        timed(
            &mut latencies,
            append_typed(conn, &format!("account-batch-{b}"), &typed),
        )
        .await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(done(
        "batch 1,000",
        "raw sqlx",
        "event",
        batches * events,
        seconds,
        latencies,
    ))
}

/// One W1 command on `stream`, for counting its round trips.
pub(crate) async fn round_trip_command(
    conn: &mut PgConnection,
    stream: &str,
) -> Result<(), BoxError> {
    let conflicts = command(conn, stream).await?;
    ensure(conflicts == 0, "no concurrent writer")
}

/// One W1 command on `stream` with a pool checkout per query, for counting its round trips.
pub(crate) async fn round_trip_pooled(pool: &PgPool, stream: &str) -> Result<(), BoxError> {
    let (account, version) = load(&mut *pool.acquire().await?, stream).await?;
    let appended = append(&mut *pool.acquire().await?, stream, version, &account).await?;
    ensure(appended, "no concurrent writer")
}

/// W5: the events of one name, with the whole envelope, in commit-safe order, through an
/// index on (name, transaction id, sequence) as esrs's.
const QUIET: &str = "SELECT sequence, transaction_id, version, name, event_version, payload::text, \
                     metadata, recorded_at, event_id, stream_id FROM raw_events \
                     WHERE name = $1 \
                       AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
                     ORDER BY transaction_id, sequence";

/// W5 set-up: the name index esrs's events table has.
pub(crate) const QUIET_INDEX: &str =
    "CREATE INDEX raw_events_by_name ON raw_events (name, transaction_id, sequence)";

/// W5: one streamed SELECT of the events of one name, each decoded (envelope and payload,
/// as a `serde_json::Value`) and summed per stream.
pub(crate) async fn quiet(
    conn: &mut PgConnection,
    name: &str,
    expected: u64,
) -> Result<Report, BoxError> {
    let started = Instant::now();
    let mut sums: HashMap<Arc<str>, i64> = HashMap::new();
    let mut rows = sqlx::query(QUIET).bind(name).fetch(conn);
    let mut count = 0u64;
    while let Some(row) = rows.try_next().await? {
        let sequence: i64 = row.try_get(0)?;
        let transaction = xid8(&row, 1)?;
        let _version: i64 = row.try_get(2)?;
        let _name: &str = row.try_get(3)?;
        let _event_version: i32 = row.try_get(4)?;
        let payload: &str = row.try_get(5)?;
        let metadata: Option<sqlx::types::Json<esrs_core::Metadata>> = row.try_get(6)?;
        let recorded_at: sqlx::types::chrono::DateTime<sqlx::types::chrono::Utc> =
            row.try_get(7)?;
        let id: sqlx::types::Uuid = row.try_get(8)?;
        let stream: &str = row.try_get(9)?;
        std::hint::black_box((&metadata, recorded_at, id, transaction, sequence));
        let event: serde_json::Value = serde_json::from_str(payload)?;
        let amount = event["amount"].as_i64().ok_or("an amount")?;
        match sums.get_mut(stream) {
            Some(sum) => *sum += amount,
            None => {
                sums.insert(Arc::from(stream), amount);
            }
        }
        count += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    ensure(
        count == expected,
        format!("read {count} events, expected {expected}"),
    )?;
    std::hint::black_box(&sums);
    Ok(done(
        "W5 1 name of 10",
        "raw sqlx",
        "event",
        count,
        seconds,
        Latencies::default(),
    ))
}
