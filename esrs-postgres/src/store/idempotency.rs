//! Idempotency keys: what the store remembers of the append made with a key, how that
//! record is read back, what a repeated request gets for it, and the sweep of expired keys.

use esrs_core::store::{AppendOutcome, AppendRequest, IdempotencyRecord, RequestDigest};
use esrs_core::{IdempotencyKey, Position, StreamId};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::PgStore;
use super::read::{Xid8, unsigned};
use super::sql::pg_type::{INT8, TEXT, XID8};
use super::sql::{Column, concat, index, offset};
use crate::Error as PgError;
use crate::error::to_core;

/// What the store remembers of the append made with `key`, unless the key has expired.
pub(super) async fn find_idempotency_key(
    store: &PgStore,
    key: &IdempotencyKey,
) -> esrs_core::Result<Option<IdempotencyRecord>> {
    let mut lease = store.connections().lease().await.map_err(to_core)?;
    let row = sqlx::query(&store.sql().find_idempotency_key)
        .bind(key.as_str())
        .bind(store.idempotency_retention().as_secs_f64())
        .fetch_optional(&mut lease)
        .await
        .map_err(to_core)?;
    drop(lease);
    row.map(|row| record_from_row(&row, 0))
        .transpose()
        .map_err(to_core)
}

/// What `request` gets for the record of its key: the original outcome, or why the key
/// cannot be reused for it (the rule of [`IdempotencyRecord::replay`]).
pub(super) fn replay(
    request: &AppendRequest,
    original: IdempotencyRecord,
) -> esrs_core::Result<AppendOutcome> {
    let Some(key) = &request.idempotency_key else {
        return Err(PgError::UnexpectedAnswer(
            "a deduplicated outcome for a request without an idempotency key".to_owned(),
        )
        .into());
    };
    original.replay(key, &request.stream, &request.digest())
}

/// The columns [`outcome_from_row`] reads, in order from its `base`.
const OUTCOME_COLUMNS: &[Column] = &[
    Column::new("stream_id", TEXT),
    Column::new("first_version", INT8),
    Column::new("last_version", INT8),
    Column::new("transaction_id", XID8),
    Column::new("first_sequence", INT8),
    Column::new("last_sequence", INT8),
];
const STREAM_ID: usize = index(OUTCOME_COLUMNS, "stream_id");
const FIRST_VERSION: usize = index(OUTCOME_COLUMNS, "first_version");
const LAST_VERSION: usize = index(OUTCOME_COLUMNS, "last_version");
const TRANSACTION_ID: usize = index(OUTCOME_COLUMNS, "transaction_id");
const FIRST_SEQUENCE: usize = index(OUTCOME_COLUMNS, "first_sequence");
const LAST_SEQUENCE: usize = index(OUTCOME_COLUMNS, "last_sequence");

/// The columns [`record_from_row`] reads, in order from its `base`: an outcome, then the
/// request's digest (`find_idempotency_key.sql`).
pub(crate) const RECORD_COLUMNS: &[Column] =
    &concat::<7>(&[OUTCOME_COLUMNS, &[Column::new("request_digest", TEXT)]]);
pub(super) const RECORD_OUTCOME: usize = offset(RECORD_COLUMNS, OUTCOME_COLUMNS);
const REQUEST_DIGEST: usize = index(RECORD_COLUMNS, "request_digest");

/// Reads a key's record from columns ([`RECORD_COLUMNS`]) starting at `base`.
pub(super) fn record_from_row(row: &PgRow, base: usize) -> Result<IdempotencyRecord, sqlx::Error> {
    let outcome = outcome_from_row(row, base + RECORD_OUTCOME, true)?;
    let digest: Option<String> = row.try_get(base + REQUEST_DIGEST)?;
    Ok(IdempotencyRecord::new(
        outcome,
        digest.map(RequestDigest::from_stored),
    ))
}

/// Reads an outcome from columns ([`OUTCOME_COLUMNS`]) starting at `base`.
pub(super) fn outcome_from_row(
    row: &PgRow,
    base: usize,
    deduplicated: bool,
) -> Result<AppendOutcome, sqlx::Error> {
    let stream: String = row.try_get(base + STREAM_ID)?;
    let first_version: i64 = row.try_get(base + FIRST_VERSION)?;
    let last_version: i64 = row.try_get(base + LAST_VERSION)?;
    let transaction: Option<Xid8> = row.try_get(base + TRANSACTION_ID)?;
    let first_sequence: Option<i64> = row.try_get(base + FIRST_SEQUENCE)?;
    let last_sequence: Option<i64> = row.try_get(base + LAST_SEQUENCE)?;
    let position = |sequence: Option<i64>| {
        transaction
            .zip(sequence)
            .map(|(t, s)| Position::new(t.0, unsigned(s)))
    };
    Ok(AppendOutcome::new(
        StreamId::from_stored(stream),
        unsigned(first_version),
        unsigned(last_version),
        position(first_sequence),
        position(last_sequence),
        deduplicated,
    ))
}

impl PgStore {
    /// Deletes the idempotency keys older than the store's
    /// [retention](crate::PgStoreOptions::idempotency_retention), in batches of 1,000, and
    /// returns how many it deleted.
    ///
    /// Expired keys are already ignored by appends and lookups; the sweep only reclaims
    /// their rows. Call it now and then (say hourly) from one process. It never blocks an
    /// append: each batch is its own short statement and skips rows an append has locked.
    pub async fn sweep_idempotency_keys(&self) -> esrs_core::Result<u64> {
        const BATCH: i64 = 1_000;
        let mut deleted = 0;
        loop {
            let mut lease = self.connections().lease().await.map_err(to_core)?;
            let done = sqlx::query(&self.sql().sweep_idempotency_keys)
                .bind(self.idempotency_retention().as_secs_f64())
                .bind(BATCH)
                .execute(&mut lease)
                .await;
            let rows = done.map_err(to_core)?.rows_affected();
            deleted += rows;
            if rows < BATCH as u64 {
                tracing::debug!(deleted, "swept expired idempotency keys");
                return Ok(deleted);
            }
        }
    }
}
