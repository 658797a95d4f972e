//! Change capture: the inserts, updates and deletes of an existing table recorded by a
//! trigger, and relayed into the store as events, in order, exactly once.
//!
//! For running an existing system and an event-sourced one side by side: the old system
//! keeps writing its table, and every change becomes an event of the row's stream.
//!
//! - [`generate`] writes the SQL, [`apply`] runs it in one transaction (safe to repeat): a
//!   capture table (a `bigserial` id, the writing transaction's id, the operation, the row
//!   as `jsonb`, the time of the change), a trigger function, and an `AFTER INSERT OR
//!   UPDATE OR DELETE … FOR EACH ROW` trigger on the table; and the relay's entry in
//!   `<schema>.capture_relays`.
//! - [`CaptureRelay`] appends the captured rows as events: [`drain`](CaptureRelay::drain)
//!   relays what is captured and returns, [`run`](CaptureRelay::run) polls until told to
//!   stop.
//!
//! # Order
//!
//! Changes are relayed in the order they were made (the capture id's order). For each row
//! this is the order of the transactions that changed it, whatever their start or commit
//! times: a transaction changes a row only after the previous writer of that row has
//! committed, and takes its capture id after it. The relay never skips a change that
//! commits late: a round relays the ids up to the sequence's value at its start only when
//! every transaction that was writing the capture table then has ended (the writers are
//! seen in `pg_locks`, so unrelated long transactions do not hold the relay back). Changes
//! of different rows of one stream made by concurrent transactions are relayed in the
//! order of their capture ids.
//!
//! # Exactly once
//!
//! Each batch is one transaction: it locks the relay's entry, appends the events, deletes
//! the relayed rows from the capture table and moves the entry's position. A relay that
//! crashes or is stopped mid-batch leaves nothing of the batch behind, and its next run
//! starts at the same row; two relays of one capture take turns on the entry. Each event's
//! metadata names the capture and the row it comes from (`captured_from`, `capture_id`).
//!
//! # Hand-over from an import
//!
//! To start from a table's current rows: apply the capture, then import the table with
//! [`PgStore::import_table`] and the same mapping, then run the relay. The import records
//! the snapshot it read the table in; the relay skips the changes of transactions visible
//! in it (the import holds their effect) and appends every later one, so each row's
//! history is in the store once: its state at the import, then its changes. The rules,
//! enforced: the import refuses to run before the capture is applied, or after the relay
//! has appended changes without an import; a second import reads nothing. Without an
//! import, the relay appends every captured change.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use esrs_core::StreamId;
use serde_json::{Map, Value};
use sqlx::Row as _;
use sqlx::postgres::types::Oid;

use crate::legacy::{ident, stream_id, template_columns};
use crate::{CaptureMapping, PgStore, TableMapping};

/// Rows relayed per transaction by default.
pub const DEFAULT_BATCH: usize = 1_000;

/// How long [`CaptureRelay::drain`] waits by default for the transactions writing the
/// capture table when it starts.
pub const DEFAULT_SETTLE_TIME: Duration = Duration::from_secs(10);

/// How often [`CaptureRelay::run`] looks for new changes when it finds none.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(200);

/// The first and the longest pause between two looks at the writers a relay waits for.
const MIN_PAUSE: Duration = Duration::from_millis(1);
const MAX_PAUSE: Duration = Duration::from_millis(50);

/// How many times a batch is tried again when an application's append to one of its
/// streams commits first.
const CONFLICT_RETRIES: u32 = 10;

/// The error of a change capture.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// The mapping cannot be captured (no `capture` section, an empty event name, a capture
    /// table that is not a plain name, …): what is wrong.
    #[error("the capture mapping is invalid: {0}")]
    Mapping(String),
    /// The captured table does not exist.
    #[error("table `{table}` does not exist")]
    UnknownTable {
        /// The table as the mapping names it.
        table: String,
    },
    /// A column the mapping names is not a column of the captured table.
    #[error("table `{table}` has no column `{column}`")]
    UnknownColumn {
        /// The table as the mapping names it.
        table: String,
        /// The column.
        column: String,
    },
    /// The capture is not applied (no relay entry, or no capture table): run
    /// [`apply`] first.
    #[error("the capture `{name}` is not applied: run `esrs capture apply` first")]
    NotApplied {
        /// The mapping's name.
        name: String,
    },
    /// The relay of this name reads another capture table than the mapping names.
    #[error("the capture `{name}` records into `{recorded}`, not `{mapped}`")]
    OtherCaptureTable {
        /// The mapping's name.
        name: String,
        /// The capture table its relay reads.
        recorded: String,
        /// The capture table the mapping names.
        mapped: String,
    },
    /// A captured row does not fit the mapping (a missing column, an invalid stream id).
    /// Nothing of its batch was appended; the relay stops at it.
    #[error("captured row {id} does not fit the mapping: {reason}")]
    Row {
        /// The row's capture id.
        id: i64,
        /// What is wrong.
        reason: String,
    },
    /// The database failed. Nothing of the batch was appended.
    #[error("the capture's database work failed")]
    Database(#[source] crate::Error),
}

impl From<sqlx::Error> for CaptureError {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(crate::Error::from_sqlx(error))
    }
}

/// A capture resolved from a mapping: the names its SQL and its relay use.
#[derive(Debug, Clone)]
struct Plan {
    name: String,
    /// The captured table as the mapping names it.
    table: String,
    /// The capture table, `schema.name`.
    capture_table: String,
    /// Its trigger function, `schema.name`.
    function: String,
    /// The trigger's name.
    trigger: String,
    store_schema: String,
    capture: CaptureMapping,
    stream: String,
    event_version: i32,
    payload: Vec<String>,
}

/// A lowercase plain identifier of at most 63 bytes.
fn plain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// `text` with every character other than a lowercase letter, a digit or `_` as `_`.
fn slug(text: &str) -> String {
    text.chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `text` as an SQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

impl Plan {
    fn new(store_schema: &str, mapping: &TableMapping) -> Result<Self, CaptureError> {
        let invalid = |reason: String| Err(CaptureError::Mapping(reason));
        if !plain(store_schema) {
            return invalid(format!(
                "the store's schema `{store_schema}` is not a plain lowercase name"
            ));
        }
        let Some(capture) = mapping.capture.clone() else {
            return invalid(format!(
                "mapping `{}` has no `capture` section",
                mapping.name
            ));
        };
        if mapping.name.trim().is_empty() {
            return invalid("`name` is empty".to_owned());
        }
        for (field, event) in [
            ("insert", &capture.insert),
            ("update", &capture.update),
            ("delete", &capture.delete),
        ] {
            if event.trim().is_empty() {
                return invalid(format!("the `capture.{field}` event name is empty"));
            }
        }
        let columns = template_columns(&mapping.stream).map_err(CaptureError::Mapping)?;
        if columns.is_empty() {
            return invalid(
                "the `stream` template has no `{column}`: every row would go to one stream"
                    .to_owned(),
            );
        }
        let Ok(event_version) = i32::try_from(mapping.event_version) else {
            return invalid("`event_version` must be between 1 and 2147483647".to_owned());
        };
        if event_version == 0 {
            return invalid("`event_version` must be between 1 and 2147483647".to_owned());
        }
        let table = match &capture.table {
            Some(table) => table.trim().to_owned(),
            None => {
                let query = mapping.query.trim();
                let head = query.to_lowercase();
                if head.starts_with("select") || head.starts_with("with") || query.is_empty() {
                    return invalid(
                        "`query` is not a table: name the captured table in `capture.table`"
                            .to_owned(),
                    );
                }
                query.to_owned()
            }
        };
        let slug = slug(&mapping.name);
        let (schema, base) = match &capture.capture_table {
            Some(given) => match given.split_once('.') {
                Some((schema, base)) => (schema.to_owned(), base.to_owned()),
                None => (store_schema.to_owned(), given.clone()),
            },
            None => (
                store_schema.to_owned(),
                truncate(&format!("capture_{slug}"), 55),
            ),
        };
        if !plain(&schema) || !plain(&base) || base.len() > 55 {
            return invalid(format!(
                "capture table `{schema}.{base}` is not a plain lowercase name of at most 55 characters"
            ));
        }
        Ok(Self {
            name: mapping.name.clone(),
            table,
            capture_table: format!("{schema}.{base}"),
            function: format!("{schema}.{base}_record"),
            trigger: truncate(&format!("esrs_capture_{slug}"), 63),
            store_schema: store_schema.to_owned(),
            capture,
            stream: mapping.stream.clone(),
            event_version,
            payload: mapping.payload.clone(),
        })
    }

    /// The SQL of the capture, on the captured table written as `table`.
    fn sql(&self, table: &str) -> String {
        let Self {
            name,
            capture_table,
            function,
            trigger,
            store_schema,
            ..
        } = self;
        let name = literal(name);
        let recorded = literal(capture_table);
        let trigger = ident(trigger);
        let capture_schema = capture_table.split('.').next().unwrap_or(store_schema);
        format!(
            "-- Change capture `{plain_name}` of {table} into the esrs store `{store_schema}`.
CREATE SCHEMA IF NOT EXISTS {capture_schema};

-- Every change of the table, in the order made: the writing transaction, the operation,
-- the row (the new row; the old one for a delete) and the time of the change.
CREATE TABLE IF NOT EXISTS {capture_table} (
    id bigserial PRIMARY KEY,
    transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
    op text NOT NULL CHECK (op IN ('insert', 'update', 'delete')),
    data jsonb NOT NULL,
    captured_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Runs with the rights of the role that applied the capture, so that the old system's role
-- needs none on the capture table; every name in it is qualified.
CREATE OR REPLACE FUNCTION {function}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO {capture_table} (op, data) VALUES ('delete', to_jsonb(OLD));
    ELSE
        INSERT INTO {capture_table} (op, data) VALUES (lower(TG_OP), to_jsonb(NEW));
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER {trigger}
    AFTER INSERT OR UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION {function}();

-- Where each relay is: the last capture id appended, and the snapshot of the import it
-- took over from (rows of transactions visible in it are the import's).
CREATE SCHEMA IF NOT EXISTS {store_schema};
CREATE TABLE IF NOT EXISTS {store_schema}.capture_relays (
    name text PRIMARY KEY,
    capture_table text NOT NULL,
    baseline pg_snapshot,
    last_id bigint NOT NULL DEFAULT 0,
    relayed bigint NOT NULL DEFAULT 0,
    covered bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO {store_schema}.capture_relays (name, capture_table)
VALUES ({name}, {recorded})
ON CONFLICT (name) DO NOTHING;
",
            plain_name = self.name.replace(['\n', '\r'], " "),
        )
    }

    /// The stored name of the event of operation `op`.
    fn event(&self, op: &str) -> Option<&str> {
        match op {
            "insert" => Some(self.capture.insert.as_str()),
            "update" => Some(self.capture.update.as_str()),
            "delete" => Some(self.capture.delete.as_str()),
            _ => None,
        }
    }
}

/// The first `max` bytes of an ASCII `text`.
fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// The SQL that captures the changes of `mapping`'s table for the store `store`, as
/// [`apply`] runs it: the capture table, the trigger function and the trigger, and the
/// relay's entry. Every statement is safe to repeat.
pub fn generate(store: &PgStore, mapping: &TableMapping) -> Result<String, CaptureError> {
    generate_for_schema(store.schema(), mapping)
}

/// [`generate`] for a store in schema `schema`, without a connection.
pub fn generate_for_schema(schema: &str, mapping: &TableMapping) -> Result<String, CaptureError> {
    let plan = Plan::new(schema, mapping)?;
    Ok(plan.sql(&plan.table))
}

/// Applies the capture of `mapping` (the SQL of [`generate`]) in one transaction, after
/// checking that the table and every column the mapping names exist. Safe to repeat: a
/// second call replaces the function and the trigger and keeps the captured rows and the
/// relay's position. The trigger records the changes of every transaction that writes the
/// table after this one commits (it waits for those writing it now).
///
/// The trigger function runs with the rights of the role that applies the capture
/// (`SECURITY DEFINER`, with a fixed `search_path`): the old system's role needs no right
/// on the capture table or the store, and its writes never fail for want of one.
pub async fn apply(store: &PgStore, mapping: &TableMapping) -> Result<(), CaptureError> {
    let plan = Plan::new(store.schema(), mapping)?;
    let mut tx = store.pool().begin().await?;
    let found: Option<(String, Oid)> = sqlx::query_as(
        "SELECT format('%I.%I', n.nspname, c.relname), c.oid
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.oid = to_regclass($1) AND c.relkind IN ('r', 'p')",
    )
    .bind(&plan.table)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((table, oid)) = found else {
        return Err(CaptureError::UnknownTable {
            table: plan.table.clone(),
        });
    };
    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT attname::text FROM pg_attribute
         WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped",
    )
    .bind(oid)
    .fetch_all(&mut *tx)
    .await?;
    let named = template_columns(&plan.stream)
        .map_err(CaptureError::Mapping)?
        .into_iter()
        .map(str::to_owned)
        .chain(plan.payload.iter().cloned());
    for column in named {
        if !columns.contains(&column) {
            return Err(CaptureError::UnknownColumn {
                table: plan.table.clone(),
                column,
            });
        }
    }
    // Multi-statement SQL through `Executor::execute` (see `migrations.rs`).
    sqlx::Executor::execute(&mut *tx, plan.sql(&table).as_str()).await?;
    let recorded: String = sqlx::query_scalar(&format!(
        "SELECT capture_table FROM {}.capture_relays WHERE name = $1",
        plan.store_schema
    ))
    .bind(&plan.name)
    .fetch_one(&mut *tx)
    .await?;
    if recorded != plan.capture_table {
        return Err(CaptureError::OtherCaptureTable {
            name: plan.name.clone(),
            recorded,
            mapped: plan.capture_table.clone(),
        });
    }
    // A capture table created anew (dropped by hand since) numbers its rows after the
    // relay's position, or the relay would take its first rows for relayed ones.
    sqlx::query(&format!(
        "SELECT setval(pg_get_serial_sequence($1, 'id')::regclass, r.last_id)
         FROM {}.capture_relays r
         WHERE r.name = $2
           AND r.last_id > coalesce(
               pg_sequence_last_value(pg_get_serial_sequence($1, 'id')::regclass), 0)",
        plan.store_schema
    ))
    .bind(&plan.capture_table)
    .bind(&plan.name)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// What a relay's entry says, as the import reads it.
#[derive(Debug)]
pub(crate) struct RelayState {
    /// An import recorded its snapshot.
    pub(crate) has_baseline: bool,
    /// The last capture id appended.
    pub(crate) last_id: i64,
}

/// The entry of relay `name` in `schema`, locked until `tx` ends; `None` if the capture is
/// not applied.
pub(crate) async fn relay_state(
    tx: &mut sqlx::PgConnection,
    schema: &str,
    name: &str,
) -> Result<Option<RelayState>, sqlx::Error> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(format!("{schema}.capture_relays"))
        .fetch_one(&mut *tx)
        .await?;
    if !exists {
        return Ok(None);
    }
    let row: Option<(bool, i64)> = sqlx::query_as(&format!(
        "SELECT baseline IS NOT NULL, last_id FROM {schema}.capture_relays
         WHERE name = $1 FOR UPDATE"
    ))
    .bind(name)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(row.map(|(has_baseline, last_id)| RelayState {
        has_baseline,
        last_id,
    }))
}

/// Records `snapshot` as the baseline of relay `name`: the import's.
pub(crate) async fn record_baseline(
    tx: &mut sqlx::PgConnection,
    schema: &str,
    name: &str,
    snapshot: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "UPDATE {schema}.capture_relays SET baseline = $2::pg_snapshot, updated_at = now()
         WHERE name = $1"
    ))
    .bind(name)
    .bind(snapshot)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// What a relay did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[non_exhaustive]
pub struct CaptureProgress {
    /// Captured rows appended as events.
    pub relayed: u64,
    /// Captured rows skipped because the import holds their effect.
    pub covered_by_import: u64,
    /// Transactions committed.
    pub batches: u64,
    /// The last capture id relayed (0 before the first).
    pub last_id: i64,
    /// Transactions writing the capture table were still open when the settle time ran
    /// out: their changes, and every later one, are left for the next round.
    pub held_back: bool,
}

impl CaptureProgress {
    fn add(&mut self, other: &Self) {
        self.relayed += other.relayed;
        self.covered_by_import += other.covered_by_import;
        self.batches += other.batches;
        self.last_id = self.last_id.max(other.last_id);
        self.held_back = other.held_back;
    }
}

/// Appends the changes captured for a mapping as events, in the order they were made,
/// exactly once (see the [module docs](self)).
///
/// ```no_run
/// # async fn demo(store: esrs_postgres::PgStore, mapping: esrs_postgres::TableMapping)
/// # -> Result<(), esrs_postgres::capture::CaptureError> {
/// use esrs_postgres::capture::{self, CaptureRelay};
///
/// capture::apply(&store, &mapping).await?; // once: the trigger records every change
/// let relay = CaptureRelay::new(&store, &mapping)?.batch_size(500);
/// let done = relay.drain().await?; // what is captured now
/// println!("{} changes appended", done.relayed);
/// let stop = tokio::time::sleep(std::time::Duration::from_secs(3600)); // or a shutdown signal
/// relay.run(stop, |totals| println!("{} so far", totals.relayed)).await?; // and on, until `stop`
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct CaptureRelay {
    store: PgStore,
    plan: Plan,
    batch: usize,
    settle_time: Duration,
    poll_interval: Duration,
}

/// What a round of a relay waits for: the transactions writing the capture table when it
/// looked, after which every row up to `upto` is settled (committed or rolled back).
struct Observed {
    oid: Oid,
    upto: i64,
    writers: Vec<String>,
}

/// One captured row.
struct Captured {
    id: i64,
    op: String,
    data: Value,
    captured_at: DateTime<Utc>,
    covered: bool,
}

impl CaptureRelay {
    /// The relay of `mapping`'s capture into `store`.
    pub fn new(store: &PgStore, mapping: &TableMapping) -> Result<Self, CaptureError> {
        Ok(Self {
            store: store.clone(),
            plan: Plan::new(store.schema(), mapping)?,
            batch: DEFAULT_BATCH,
            settle_time: DEFAULT_SETTLE_TIME,
            poll_interval: DEFAULT_POLL_INTERVAL,
        })
    }

    /// Relays at most `rows` captured rows per transaction ([`DEFAULT_BATCH`]; at least 1).
    pub fn batch_size(mut self, rows: usize) -> Self {
        self.batch = rows.max(1);
        self
    }

    /// How long [`drain`](Self::drain) waits for the transactions writing the capture table
    /// when it starts ([`DEFAULT_SETTLE_TIME`]).
    pub fn settle_time(mut self, time: Duration) -> Self {
        self.settle_time = time;
        self
    }

    /// How often [`run`](Self::run) looks for changes when it found none
    /// ([`DEFAULT_POLL_INTERVAL`]).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Relays every change captured when it starts, once the transactions writing the
    /// capture table then have ended (waiting up to the settle time for them), in
    /// batches; returns what it did.
    pub async fn drain(&self) -> Result<CaptureProgress, CaptureError> {
        self.drain_with_progress(|_| {}).await
    }

    /// [`drain`](Self::drain), calling `progress` with the totals after each batch.
    pub async fn drain_with_progress(
        &self,
        mut progress: impl FnMut(&CaptureProgress),
    ) -> Result<CaptureProgress, CaptureError> {
        let mut done = CaptureProgress::default();
        let observed = self.observe().await?;
        let deadline = Instant::now() + self.settle_time;
        let mut pause = MIN_PAUSE;
        while self.writing(&observed).await? {
            let now = Instant::now();
            if now >= deadline {
                done.held_back = true;
                return Ok(done);
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(MAX_PAUSE);
        }
        loop {
            let batch = self.relay_batch(observed.upto).await?;
            if batch.batches == 0 {
                done.last_id = done.last_id.max(batch.last_id);
                return Ok(done);
            }
            done.add(&batch);
            progress(&done);
        }
    }

    /// Relays changes as they are captured until `shutdown` completes, calling `progress`
    /// with the totals after each batch; returns the totals. A batch is never cut short: a
    /// stop takes effect between batches, or while the relay waits.
    pub async fn run(
        &self,
        shutdown: impl Future<Output = ()>,
        mut progress: impl FnMut(&CaptureProgress),
    ) -> Result<CaptureProgress, CaptureError> {
        use futures_util::FutureExt as _;

        let mut shutdown = std::pin::pin!(shutdown);
        let mut done = CaptureProgress::default();
        loop {
            let observed = self.observe().await?;
            // However long the writers seen now take, the relay waits for these ones only,
            // so that a steady stream of new writers cannot hold it back.
            let mut pause = MIN_PAUSE;
            while self.writing(&observed).await? {
                tokio::select! {
                    () = &mut shutdown => return Ok(done),
                    () = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(self.poll_interval.max(MIN_PAUSE));
            }
            let mut relayed = false;
            loop {
                if shutdown.as_mut().now_or_never().is_some() {
                    return Ok(done);
                }
                let batch = self.relay_batch(observed.upto).await?;
                if batch.batches == 0 {
                    break;
                }
                relayed = true;
                done.add(&batch);
                progress(&done);
            }
            if !relayed {
                tokio::select! {
                    () = &mut shutdown => return Ok(done),
                    () = tokio::time::sleep(self.poll_interval) => {}
                }
            }
        }
    }

    /// The capture id up to which rows are relayed once `writers` have ended: the
    /// sequence's value now, and the transactions writing the capture table now.
    async fn observe(&self) -> Result<Observed, CaptureError> {
        let pool = self.store.pool();
        let table = &self.plan.capture_table;
        let exists: Option<Oid> = sqlx::query_scalar("SELECT to_regclass($1)::oid")
            .bind(table)
            .fetch_one(pool)
            .await?;
        let Some(oid) = exists else {
            return Err(CaptureError::NotApplied {
                name: self.plan.name.clone(),
            });
        };
        // First the sequence, then the writers: a transaction that took an id up to it
        // took the table's lock before, and holds it until it ends.
        let upto: Option<i64> = sqlx::query_scalar(
            "SELECT pg_sequence_last_value(pg_get_serial_sequence($1, 'id')::regclass)",
        )
        .bind(table)
        .fetch_one(pool)
        .await?;
        let writers: Vec<String> = sqlx::query_scalar(
            "SELECT virtualtransaction FROM pg_locks
             WHERE locktype = 'relation' AND relation = $1 AND mode = 'RowExclusiveLock'
               AND pid <> pg_backend_pid()",
        )
        .bind(oid)
        .fetch_all(pool)
        .await?;
        Ok(Observed {
            oid,
            upto: upto.unwrap_or(0),
            writers,
        })
    }

    /// Whether any of the writers `observed` is still open.
    async fn writing(&self, observed: &Observed) -> Result<bool, CaptureError> {
        if observed.writers.is_empty() {
            return Ok(false);
        }
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_locks
                            WHERE locktype = 'relation' AND relation = $1
                              AND virtualtransaction = ANY($2))",
        )
        .bind(observed.oid)
        .bind(&observed.writers)
        .fetch_one(self.store.pool())
        .await?)
    }

    /// Relays one batch of the rows up to `upto`, trying again when an application's
    /// append to one of its streams commits first; no batch (`batches == 0`) when nothing
    /// is left.
    async fn relay_batch(&self, upto: i64) -> Result<CaptureProgress, CaptureError> {
        let mut attempt = 0;
        loop {
            match self.try_batch(upto).await {
                Err(CaptureError::Database(crate::Error::Database(error)))
                    if crate::error::unique_violation(&error).is_some()
                        && attempt < CONFLICT_RETRIES =>
                {
                    attempt += 1;
                    tracing::debug!(
                        attempt,
                        "a captured batch lost a race for a stream version, retrying"
                    );
                }
                other => return other,
            }
        }
    }

    async fn try_batch(&self, upto: i64) -> Result<CaptureProgress, CaptureError> {
        let plan = &self.plan;
        let schema = &plan.store_schema;
        let mut tx = self.store.pool().begin().await?;
        let Some(state) = relay_state(&mut tx, schema, &plan.name).await? else {
            return Err(CaptureError::NotApplied {
                name: plan.name.clone(),
            });
        };
        let mut done = CaptureProgress {
            last_id: state.last_id,
            ..CaptureProgress::default()
        };
        if state.last_id >= upto {
            return Ok(done);
        }
        let rows = sqlx::query(&format!(
            "SELECT c.id, c.op, c.data, c.captured_at,
                    coalesce(pg_visible_in_snapshot(c.transaction_id, r.baseline), false) AS covered
             FROM {capture} c, {schema}.capture_relays r
             WHERE r.name = $1 AND c.id > $2 AND c.id <= $3
             ORDER BY c.id
             LIMIT $4",
            capture = plan.capture_table,
        ))
        .bind(&plan.name)
        .bind(state.last_id)
        .bind(upto)
        .bind(i64::try_from(self.batch).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await?;
        let rows = rows
            .iter()
            .map(|row| -> Result<Captured, sqlx::Error> {
                Ok(Captured {
                    id: row.try_get("id")?,
                    op: row.try_get("op")?,
                    data: row.try_get("data")?,
                    captured_at: row.try_get("captured_at")?,
                    covered: row.try_get("covered")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let Some(last) = rows.last().map(|r| r.id) else {
            return Ok(done);
        };
        let events = self.events(&rows)?;
        let mut versions: HashMap<String, i64> = {
            let streams: Vec<&str> = events.iter().map(|e| e.stream.as_str()).collect();
            sqlx::query_as(&format!(
                "SELECT stream_id, max(version) FROM {schema}.events
                 WHERE stream_id = ANY($1) GROUP BY stream_id"
            ))
            .bind(streams.as_slice())
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect()
        };
        let mut columns = Columns::default();
        for event in events {
            let version = versions.entry(event.stream.clone()).or_insert(0);
            *version += 1;
            columns.versions.push(*version);
            columns.streams.push(event.stream);
            columns.names.push(event.name.to_owned());
            columns.payloads.push(event.payload);
            columns.metadata.push(event.metadata);
            columns.times.push(event.at);
        }
        let inserted = sqlx::query(&format!(
            "INSERT INTO {schema}.events
                 (stream_id, version, name, event_version, payload, metadata, recorded_at)
             SELECT t.stream_id, t.version, t.name, $7, t.payload::json, t.metadata::jsonb,
                    t.recorded_at
             FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[],
                         $6::timestamptz[])
                 WITH ORDINALITY AS t(stream_id, version, name, payload, metadata, recorded_at, i)
             ORDER BY t.i"
        ))
        .bind(&columns.streams)
        .bind(&columns.versions)
        .bind(&columns.names)
        .bind(&columns.payloads)
        .bind(&columns.metadata)
        .bind(&columns.times)
        .bind(plan.event_version)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query(&format!(
            "DELETE FROM {} WHERE id > $1 AND id <= $2",
            plan.capture_table
        ))
        .bind(state.last_id)
        .bind(last)
        .execute(&mut *tx)
        .await?;
        let covered = rows.iter().filter(|r| r.covered).count() as u64;
        sqlx::query(&format!(
            "UPDATE {schema}.capture_relays
             SET last_id = $2, relayed = relayed + $3, covered = covered + $4, updated_at = now()
             WHERE name = $1"
        ))
        .bind(&plan.name)
        .bind(last)
        .bind(i64::try_from(inserted).unwrap_or(i64::MAX))
        .bind(i64::try_from(covered).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        if inserted > 0 {
            self.store.announce_append();
        }
        done.relayed = inserted;
        done.covered_by_import = covered;
        done.batches = 1;
        done.last_id = last;
        Ok(done)
    }

    /// The events of the rows the import does not cover, in order.
    fn events<'p>(&'p self, rows: &[Captured]) -> Result<Vec<Event<'p>>, CaptureError> {
        let plan = &self.plan;
        let mut events = Vec::with_capacity(rows.len());
        for row in rows.iter().filter(|r| !r.covered) {
            let fail = |reason: String| CaptureError::Row { id: row.id, reason };
            let name = plan
                .event(&row.op)
                .ok_or_else(|| fail(format!("unknown operation `{}`", row.op)))?;
            let Value::Object(columns) = &row.data else {
                return Err(fail("the row is not a record".to_owned()));
            };
            let stream = stream_id(&plan.stream, columns).map_err(fail)?;
            StreamId::new(&stream).map_err(|e| fail(format!("stream id `{stream}`: {e}")))?;
            let mut payload = Map::new();
            for column in &plan.payload {
                let value = columns
                    .get(column)
                    .ok_or_else(|| fail(format!("no column `{column}`")))?;
                payload.insert(column.clone(), value.clone());
            }
            let metadata = esrs_core::Metadata::new()
                .with("captured_from", plan.name.clone())
                .with("capture_id", row.id);
            events.push(Event {
                stream,
                name,
                payload: Value::Object(payload).to_string(),
                metadata: serde_json::to_string(&metadata).map_err(|e| fail(e.to_string()))?,
                at: row.captured_at,
            });
        }
        Ok(events)
    }
}

/// An event made of a captured row.
struct Event<'p> {
    stream: String,
    name: &'p str,
    payload: String,
    metadata: String,
    at: DateTime<Utc>,
}

/// A batch's events, one array per column.
#[derive(Default)]
struct Columns {
    streams: Vec<String>,
    versions: Vec<i64>,
    names: Vec<String>,
    payloads: Vec<String>,
    metadata: Vec<String>,
    times: Vec<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping() -> TableMapping {
        serde_json::from_value(serde_json::json!({
            "name": "Legacy invoices",
            "query": "legacy.invoices",
            "stream": "invoice-{id}",
            "event": "InvoiceImported",
            "payload": ["amount"],
            "time": "issued_at",
            "order_by": ["id"],
            "capture": {"insert": "InvoiceIssued", "update": "InvoiceChanged", "delete": "InvoiceCancelled"}
        }))
        .unwrap()
    }

    #[test]
    fn the_sql_names_the_table_the_capture_table_and_the_trigger() {
        let sql = generate_for_schema("esrs", &mapping()).unwrap();
        assert!(sql.contains("CREATE TABLE IF NOT EXISTS esrs.capture_legacy_invoices ("));
        assert!(sql.contains("CREATE OR REPLACE FUNCTION esrs.capture_legacy_invoices_record()"));
        assert!(sql.contains(
            "CREATE OR REPLACE TRIGGER \"esrs_capture_legacy_invoices\"\n    AFTER INSERT OR UPDATE OR DELETE ON legacy.invoices"
        ));
        assert!(sql.contains("VALUES ('Legacy invoices', 'esrs.capture_legacy_invoices')"));
    }

    #[test]
    fn unfit_mappings_are_refused_with_the_reason() {
        let mut m = mapping();
        m.capture = None;
        let e = generate_for_schema("esrs", &m).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the capture mapping is invalid: mapping `Legacy invoices` has no `capture` section"
        );
        let mut m = mapping();
        m.query = "SELECT * FROM legacy.invoices".into();
        assert!(
            generate_for_schema("esrs", &m)
                .unwrap_err()
                .to_string()
                .contains("name the captured table in `capture.table`")
        );
        let mut m = mapping();
        m.capture.as_mut().unwrap().capture_table = Some("Bad.Name".into());
        assert!(
            generate_for_schema("esrs", &m)
                .unwrap_err()
                .to_string()
                .contains("`Bad.Name` is not a plain lowercase name")
        );
        let mut m = mapping();
        m.capture.as_mut().unwrap().delete = " ".into();
        assert!(
            generate_for_schema("esrs", &m)
                .unwrap_err()
                .to_string()
                .contains("`capture.delete` event name is empty")
        );
    }
}
