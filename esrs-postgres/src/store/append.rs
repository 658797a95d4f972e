//! Appending: one statement, one round trip, per attempt: a plain `INSERT` for an append
//! that expects a version and carries no idempotency key, else a call of the schema's
//! `append` function.

use std::time::Instant;

use esrs_core::error::EncodeError;
use esrs_core::metrics::{AppendMetrics, AppendResult};
use esrs_core::store::{AppendOutcome, AppendRequest, RequestDigest};
use esrs_core::{Conflict, Error, ExpectedVersion, IdempotencyKey, Position};
use sqlx::postgres::types::Oid;
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{Executor, Postgres, Row};
use tracing::Instrument;

use super::PgStore;
use super::idempotency::{
    RECORD_COLUMNS, RECORD_OUTCOME, find_idempotency_key, outcome_from_row, record_from_row, replay,
};
use super::read::{Xid8, signed, unsigned};
use super::sql::pg_type::{INT8, OID, TEXT, XID8};
use super::sql::{Column, concat, index, offset};
use crate::Error as PgError;
use crate::error::{to_core, unique_violation};

/// The unique constraint an append collides on when another request took its key.
const KEY_CONSTRAINT: &str = "idempotency_keys_key";

/// How many times an append with [`ExpectedVersion::Any`] is retried after losing a race
/// for the stream's next version. Each lost race means another append committed, so the
/// log makes progress; the bound only stops a pathological livelock.
const ANY_RETRIES: u32 = 100;

/// The request as statement parameters, built once and reused by retries.
struct Params<'r> {
    expected: Option<i64>,
    names: Vec<&'r str>,
    versions: Vec<i32>,
    payloads: Vec<&'r str>,
    metadata: Option<String>,
    key: Option<&'r str>,
    /// The request's digest, computed only for a request with a key.
    digest: Option<RequestDigest>,
}

impl<'r> Params<'r> {
    fn new(request: &'r AppendRequest) -> esrs_core::Result<Self> {
        let expected = match request.expected {
            ExpectedVersion::Any => None,
            ExpectedVersion::NoStream => Some(0),
            ExpectedVersion::Exact(version) => Some(signed(version)),
            other => return Err(PgError::UnsupportedExpectedVersion(other).into()),
        };
        let mut names = Vec::with_capacity(request.events.len());
        let mut versions = Vec::with_capacity(request.events.len());
        let mut payloads = Vec::with_capacity(request.events.len());
        for event in &request.events {
            names.push(event.name);
            versions.push(i32::try_from(event.schema_version).map_err(|_| {
                PgError::SchemaVersionTooLarge {
                    name: event.name,
                    schema_version: event.schema_version,
                }
            })?);
            payloads.push(event.payload.get());
        }
        let metadata = if request.metadata.is_empty() {
            None
        } else {
            Some(serde_json::to_string(&request.metadata).map_err(|source| {
                Error::Encode(EncodeError::Json {
                    name: "metadata",
                    source,
                })
            })?)
        };
        Ok(Self {
            expected,
            names,
            versions,
            payloads,
            metadata,
            key: request.idempotency_key.as_ref().map(IdempotencyKey::as_str),
            digest: request.idempotency_key.as_ref().map(|_| request.digest()),
        })
    }
}

/// What one call of the append function did.
enum Attempt {
    /// The append is decided: written, deduplicated, or refused.
    Decided(esrs_core::Result<AppendOutcome>),
    /// A concurrent transaction committed the same stream version (`on_key` false) or the
    /// same idempotency key (`on_key` true) first; nothing was written.
    LostRace { on_key: bool },
}

/// Appends `request`, retrying an append with [`ExpectedVersion::Any`] that lost a race
/// for the stream's next version, and notifies readers after the commit.
pub(super) async fn append(
    store: &PgStore,
    request: AppendRequest,
) -> esrs_core::Result<AppendOutcome> {
    let span = db_span!(
        "esrs.pg.append",
        store,
        "append", "events",
        stream = %request.stream,
        events = request.events.len(),
        expected = %request.expected,
        outcome = tracing::field::Empty,
    );
    async {
        let started = Instant::now();
        let result = store.append_retrying(&request).await;
        store.appended(&request, &result, started);
        result
    }
    .instrument(span)
    .await
}

/// The append metrics of the PostgreSQL store: `store = "postgres"`.
static METRICS: AppendMetrics = AppendMetrics::new("postgres");

impl PgStore {
    /// Records an append that answered `result` after starting at `started`: its metrics,
    /// its span's outcome, and the warning if it was slow.
    fn appended(
        &self,
        request: &AppendRequest,
        result: &esrs_core::Result<AppendOutcome>,
        started: Instant,
    ) {
        let elapsed = started.elapsed();
        let outcome = AppendResult::of(result);
        tracing::Span::current().record("outcome", outcome.as_str());
        METRICS.record(outcome, request.events.len(), elapsed);
        if outcome == AppendResult::Appended {
            METRICS.record_payloads(request.events.iter().map(|e| e.payload.get().len()));
        }
        self.inner
            .slow_appends
            .check(&request.stream, request.events.len(), elapsed);
    }

    /// Appends `request`: the plain insert when it applies, else the append function, again
    /// after each race lost by an append with [`ExpectedVersion::Any`].
    async fn append_retrying(&self, request: &AppendRequest) -> esrs_core::Result<AppendOutcome> {
        request.check(self.max_payload_bytes())?;
        let params = Params::new(request)?;
        let mut races = 0;
        loop {
            // The events table as known before the attempt, or as the insert reports it:
            // what the attempt writes is recorded as seen in that table (see `connection::Seen`).
            let mut table = self.inner.seen.table();
            // The notification is sent after the commit, outside the append's transaction.
            let attempt = match self.insert_expected(request, &params, &mut table).await? {
                Some(attempt) => attempt,
                None => {
                    let mut lease = self.connections().lease().await.map_err(to_core)?;
                    let row = self.call_append(&mut lease, request, &params, false).await;
                    drop(lease);
                    attempt(row, request)?
                }
            };
            match attempt {
                Attempt::Decided(result) => {
                    if let Some(outcome) = result.as_ref().ok().filter(|o| !o.is_empty()) {
                        self.inner
                            .seen
                            .record(&outcome.stream, outcome.last_version, table);
                        if !outcome.deduplicated {
                            self.announce_append();
                        }
                    }
                    return result;
                }
                Attempt::LostRace { on_key } => {
                    if let Some(result) = self.after_lost_race(request, on_key).await? {
                        return result;
                    }
                    races += 1;
                    if races >= ANY_RETRIES {
                        return Err(Error::Retryable {
                            source: format!(
                                "lost {races} races for the next version of stream `{}`",
                                request.stream
                            )
                            .into(),
                        });
                    }
                    tracing::debug!(races, "lost a race for the stream's next version, retrying");
                }
            }
        }
    }

    /// Appends `request` inside the caller's transaction (or on the caller's connection),
    /// so that other writes (an inline projection, an outbox row) commit or roll back with
    /// the events.
    ///
    /// With notifications on, the transaction notifies waiting readers when it commits;
    /// PostgreSQL serialises the commits of notifying transactions, which
    /// [`append`](esrs_core::EventStore::append) avoids by notifying after its commit.
    ///
    /// The round trip is the same as [`append`](esrs_core::EventStore::append)'s. Readers of
    /// the global log see the events only when the caller's transaction commits, and are
    /// held back while it is open: keep it short. If a concurrent transaction wins the race
    /// for the stream's next version or for the idempotency key, PostgreSQL aborts the
    /// caller's transaction; the error (a [`Conflict`](esrs_core::Error::Conflict), also for
    /// [`ExpectedVersion::Any`]) or the original outcome of the key (`deduplicated`) is
    /// returned, and the caller must roll back.
    pub async fn append_in(
        &self,
        conn: &mut PgConnection,
        request: AppendRequest,
    ) -> esrs_core::Result<AppendOutcome> {
        let span = db_span!(
            "esrs.pg.append",
            self,
            "append", "events",
            stream = %request.stream,
            events = request.events.len(),
            expected = %request.expected,
            in_transaction = true,
            outcome = tracing::field::Empty,
        );
        let started = Instant::now();
        let result = self
            .append_in_transaction(conn, &request)
            .instrument(span.clone())
            .await;
        span.in_scope(|| self.appended(&request, &result, started));
        result
    }

    /// [`append_in`](Self::append_in), without its measurements.
    async fn append_in_transaction(
        &self,
        conn: &mut PgConnection,
        request: &AppendRequest,
    ) -> esrs_core::Result<AppendOutcome> {
        request.check(self.max_payload_bytes())?;
        let params = Params::new(request)?;
        // Notified at the caller's commit, from inside its transaction.
        let row = self
            .call_append(conn, request, &params, self.inner.notify)
            .await;
        match attempt(row, request)? {
            Attempt::Decided(result) => result,
            Attempt::LostRace { on_key } => match self.after_lost_race(request, on_key).await? {
                Some(result) => result,
                None => Err(Conflict::new(
                    request.stream.clone(),
                    request.expected,
                    super::read::stream_version(self, &request.stream).await?,
                )
                .into()),
            },
        }
    }

    /// The common append, a version expected and no idempotency key, as one plain `INSERT`
    /// (cheaper for the server than the append function). `None` when the request is not of
    /// that kind, or when the stream is short of the expected version: the append function
    /// then decides (a conflict with the stream's actual version, or the append if the
    /// stream has reached the version meanwhile). A one-event insert sets `table` to the
    /// events table it wrote to.
    async fn insert_expected(
        &self,
        request: &AppendRequest,
        params: &Params<'_>,
        table: &mut super::connection::Table,
    ) -> esrs_core::Result<Option<Attempt>> {
        let Some(expected) = params.expected else {
            return Ok(None);
        };
        if params.key.is_some() || params.names.is_empty() {
            return Ok(None);
        }
        // The events table in which event `expected` was seen, if it was (0: not seen).
        let seen = if expected > 0 {
            self.inner.seen.exists(&request.stream, unsigned(expected))
        } else {
            None
        };
        let seen_in = Oid(seen.unwrap_or(0));
        let mut lease = self.connections().lease().await.map_err(to_core)?;
        // One event: the same insert without the arrays (less work for the server).
        let inserted = if let ([name], [version], [payload]) = (
            params.names.as_slice(),
            params.versions.as_slice(),
            params.payloads.as_slice(),
        ) {
            // A plain `VALUES` when the expected version needs no lookup.
            let sql = if seen.is_some() {
                &self.sql().append_one_seen
            } else {
                &self.sql().append_one
            };
            let row = sqlx::query(sql)
                .bind(request.stream.as_str())
                .bind(expected)
                .bind(*name)
                .bind(*version)
                .bind(*payload)
                .bind(params.metadata.as_deref())
                .bind(seen_in)
                .fetch_optional(&mut lease)
                .await;
            drop(lease);
            row.and_then(|row| {
                row.map(|row| {
                    let sequence: i64 = row.try_get(ONE_SEQUENCE)?;
                    let transaction: Xid8 = row.try_get(ONE_TRANSACTION_ID)?;
                    let Oid(written_in) = row.try_get(ONE_TABLE)?;
                    self.inner.seen.learn(written_in);
                    *table = written_in;
                    Ok((1, transaction, sequence, sequence))
                })
                .transpose()
            })
        } else {
            let row = sqlx::query(&self.sql().append_expected)
                .bind(request.stream.as_str())
                .bind(expected)
                .bind(params.names.as_slice())
                .bind(params.versions.as_slice())
                .bind(params.payloads.as_slice())
                .bind(params.metadata.as_deref())
                .bind(seen_in)
                .fetch_one(&mut lease)
                .await;
            drop(lease);
            row.and_then(|row| {
                let inserted: i64 = row.try_get(INSERTED)?;
                if inserted == 0 {
                    return Ok(None);
                }
                Ok(Some((
                    inserted,
                    row.try_get(INSERTED_TRANSACTION_ID)?,
                    row.try_get(INSERTED_FIRST_SEQUENCE)?,
                    row.try_get(INSERTED_LAST_SEQUENCE)?,
                )))
            })
        };
        let (inserted, transaction, first, last) = match inserted {
            Ok(Some(inserted)) => inserted,
            Ok(None) => return Ok(None),
            Err(error) => {
                return match unique_violation(&error) {
                    Some(constraint) => Ok(Some(Attempt::LostRace {
                        on_key: constraint == KEY_CONSTRAINT,
                    })),
                    None => Err(to_core(error)),
                };
            }
        };
        let count = u64::try_from(inserted).unwrap_or_default();
        Ok(Some(Attempt::Decided(Ok(AppendOutcome::appended(
            request.stream.clone(),
            unsigned(expected),
            count,
            Some((
                Position::new(transaction.0, unsigned(first)),
                Position::new(transaction.0, unsigned(last)),
            )),
        )))))
    }

    /// Calls the append function on `executor`.
    async fn call_append<'e, E>(
        &self,
        executor: E,
        request: &AppendRequest,
        params: &Params<'_>,
        notify_in_transaction: bool,
    ) -> Result<PgRow, sqlx::Error>
    where
        E: Executor<'e, Database = Postgres>,
    {
        sqlx::query(&self.sql().append)
            .bind(request.stream.as_str())
            .bind(params.expected)
            .bind(params.names.as_slice())
            .bind(params.versions.as_slice())
            .bind(params.payloads.as_slice())
            .bind(params.metadata.as_deref())
            .bind(params.key)
            .bind(notify_in_transaction)
            .bind(params.digest.as_ref().map(RequestDigest::as_str))
            .bind(self.idempotency_retention().as_secs_f64())
            .fetch_one(executor)
            .await
    }

    /// Decides an append that lost a race: the key's original outcome if a concurrent
    /// request with the same key won, a conflict if the expected version is now stale, or
    /// `None` to try again.
    async fn after_lost_race(
        &self,
        request: &AppendRequest,
        on_key: bool,
    ) -> esrs_core::Result<Option<esrs_core::Result<AppendOutcome>>> {
        if let Some(key) = &request.idempotency_key {
            if let Some(original) = find_idempotency_key(self, key).await? {
                return Ok(Some(replay(request, original)));
            }
        }
        if on_key || request.expected == ExpectedVersion::Any {
            return Ok(None);
        }
        let actual = super::read::stream_version(self, &request.stream).await?;
        Ok(Some(Err(Conflict::new(
            request.stream.clone(),
            request.expected,
            actual,
        )
        .into())))
    }
}

/// What the append function's answer means for `request`.
fn attempt(row: Result<PgRow, sqlx::Error>, request: &AppendRequest) -> esrs_core::Result<Attempt> {
    match row {
        Ok(row) => decode_outcome(&row, request)
            .map(Attempt::Decided)
            .map_err(to_core),
        Err(error) => match unique_violation(&error) {
            Some(constraint) => Ok(Attempt::LostRace {
                on_key: constraint == KEY_CONSTRAINT,
            }),
            None => Err(to_core(error)),
        },
    }
}

/// The columns of the append function's row ([`decode_outcome`]): what the append did,
/// then the record it wrote or found ([`RECORD_COLUMNS`]).
pub(crate) const APPEND_COLUMNS: &[Column] =
    &concat::<8>(&[&[Column::new("kind", TEXT)], RECORD_COLUMNS]);
const KIND: usize = index(APPEND_COLUMNS, "kind");
const APPEND_RECORD: usize = offset(APPEND_COLUMNS, RECORD_COLUMNS);
/// A conflict reports the stream's actual version as its last version.
const ACTUAL_VERSION: usize = index(APPEND_COLUMNS, "last_version");

/// The columns of a one-event insert (`append_one.sql`, `append_one_seen.sql`).
pub(crate) const ONE_INSERTED_COLUMNS: &[Column] = &[
    Column::new("sequence", INT8),
    Column::new("transaction_id", XID8),
    Column::new("tableoid", OID),
];
const ONE_SEQUENCE: usize = index(ONE_INSERTED_COLUMNS, "sequence");
const ONE_TRANSACTION_ID: usize = index(ONE_INSERTED_COLUMNS, "transaction_id");
const ONE_TABLE: usize = index(ONE_INSERTED_COLUMNS, "tableoid");

/// The columns of a batch insert (`append_expected.sql`).
pub(crate) const INSERTED_COLUMNS: &[Column] = &[
    Column::new("inserted", INT8),
    Column::new("transaction_id", XID8),
    Column::new("first_sequence", INT8),
    Column::new("last_sequence", INT8),
];
const INSERTED: usize = index(INSERTED_COLUMNS, "inserted");
const INSERTED_TRANSACTION_ID: usize = index(INSERTED_COLUMNS, "transaction_id");
const INSERTED_FIRST_SEQUENCE: usize = index(INSERTED_COLUMNS, "first_sequence");
const INSERTED_LAST_SEQUENCE: usize = index(INSERTED_COLUMNS, "last_sequence");

/// Turns the append function's row ([`APPEND_COLUMNS`]) into the append's result.
fn decode_outcome(
    row: &PgRow,
    request: &AppendRequest,
) -> Result<esrs_core::Result<AppendOutcome>, sqlx::Error> {
    let kind: &str = row.try_get(KIND)?;
    Ok(match kind {
        "appended" => Ok(outcome_from_row(
            row,
            APPEND_RECORD + RECORD_OUTCOME,
            false,
        )?),
        "deduplicated" => replay(request, record_from_row(row, APPEND_RECORD)?),
        "conflict" => {
            let actual: i64 = row.try_get(ACTUAL_VERSION)?;
            Err(Conflict::new(request.stream.clone(), request.expected, unsigned(actual)).into())
        }
        other => Err(PgError::UnexpectedAnswer(format!(
            "unexpected result `{other}` from the append function"
        ))
        .into()),
    })
}
