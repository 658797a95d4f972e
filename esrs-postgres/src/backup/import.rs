//! Import: a backup written anew into an empty schema, in one transaction.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};
use tokio::io::AsyncRead;

use super::format::Line;
use super::{BackupError, BackupSummary, LineReader};
use crate::PgStore;

/// Events inserted per statement.
const BATCH: usize = 1_000;

/// Events read, not inserted yet: one array per column.
#[derive(Default)]
struct Batch {
    ids: Vec<uuid::Uuid>,
    streams: Vec<String>,
    versions: Vec<i64>,
    names: Vec<String>,
    event_versions: Vec<i32>,
    payloads: Vec<String>,
    metadata: Vec<Option<String>>,
    recorded_at: Vec<DateTime<Utc>>,
}

impl Batch {
    fn len(&self) -> usize {
        self.streams.len()
    }
}

/// A checkpoint of the backup, waiting for the event it covers up to.
struct Checkpoint {
    projection: String,
    covers: u64,
    updated_at: DateTime<Utc>,
    position: Option<(i64, i64)>,
}

/// The import's progress through the log: the checkpoints to translate.
struct Import<'a> {
    schema: &'a str,
    checkpoints: Vec<Checkpoint>,
    inserted: u64,
}

impl Import<'_> {
    /// Inserts `batch` in its order and gives each checkpoint that covers up to one of its
    /// events that event's new position.
    async fn insert(
        &mut self,
        tx: &mut Transaction<'static, Postgres>,
        batch: &mut Batch,
    ) -> Result<(), BackupError> {
        if batch.len() == 0 {
            return Ok(());
        }
        // Identity values are drawn in the order the rows are inserted, which ORDER BY
        // fixes: the i-th smallest sequence returned is the i-th event of the batch.
        let rows: Vec<(i64, i64)> = sqlx::query_as(&format!(
            "WITH inserted AS (
                 INSERT INTO {schema}.events
                     (stream_id, version, name, event_version, payload, metadata, recorded_at,
                      event_id)
                 SELECT t.stream_id, t.version, t.name, t.event_version, t.payload::json,
                        t.metadata::jsonb, t.recorded_at, t.event_id
                 FROM unnest($1::text[], $2::bigint[], $3::text[], $4::integer[], $5::text[],
                             $6::text[], $7::timestamptz[], $8::uuid[])
                     WITH ORDINALITY
                     AS t(stream_id, version, name, event_version, payload, metadata, recorded_at,
                          event_id, i)
                 ORDER BY t.i
                 RETURNING transaction_id, sequence
             )
             SELECT transaction_id::text::bigint, sequence FROM inserted ORDER BY sequence",
            schema = self.schema
        ))
        .bind(&batch.streams)
        .bind(&batch.versions)
        .bind(&batch.names)
        .bind(&batch.event_versions)
        .bind(&batch.payloads)
        .bind(&batch.metadata)
        .bind(&batch.recorded_at)
        .bind(&batch.ids)
        .fetch_all(&mut **tx)
        .await?;
        let first = self.inserted;
        self.inserted += rows.len() as u64;
        for checkpoint in &mut self.checkpoints {
            if checkpoint.covers > first && checkpoint.covers <= self.inserted {
                let index = usize::try_from(checkpoint.covers - first - 1).unwrap_or(usize::MAX);
                checkpoint.position = rows.get(index).copied();
            }
        }
        *batch = Batch::default();
        Ok(())
    }
}

impl PgStore {
    /// Imports a backup (see [`backup`](crate::backup)) into this store's schema, which
    /// must be empty (it is migrated first), on any cluster; returns what was imported.
    ///
    /// Everything goes in one transaction, so a failed import (a corrupt or cut-short
    /// file, a lost connection) leaves the schema empty. Event ids, streams, versions, names,
    /// payloads (byte for byte), metadata and recorded times are kept; the events are
    /// written in the backup's global order and get positions of this cluster, so every
    /// event appended later sorts after them; each checkpoint moves to the new position of
    /// the last event it covered, and each idempotency key to its events' new positions.
    /// The tables are locked against appends until the import commits.
    pub async fn import(
        &self,
        input: impl AsyncRead + Unpin + Send,
    ) -> Result<BackupSummary, BackupError> {
        self.import_with_progress(input, |_| {}).await
    }

    /// [`import`](Self::import), telling `progress` the number of events imported so far
    /// after every thousand.
    pub async fn import_with_progress(
        &self,
        input: impl AsyncRead + Unpin + Send,
        mut progress: impl FnMut(u64) + Send,
    ) -> Result<BackupSummary, BackupError> {
        self.migrate().await?;
        let schema = self.schema();
        let mut tx = self.pool().begin().await?;
        sqlx::query(&format!(
            "LOCK TABLE {schema}.events, {schema}.snapshots, {schema}.idempotency_keys,
                        {schema}.checkpoints IN EXCLUSIVE MODE"
        ))
        .execute(&mut *tx)
        .await?;
        let occupied: bool = sqlx::query_scalar(&format!(
            "SELECT EXISTS (SELECT 1 FROM {schema}.events)
                 OR EXISTS (SELECT 1 FROM {schema}.snapshots)
                 OR EXISTS (SELECT 1 FROM {schema}.idempotency_keys)
                 OR EXISTS (SELECT 1 FROM {schema}.checkpoints)"
        ))
        .fetch_one(&mut *tx)
        .await?;
        if occupied {
            return Err(BackupError::NotEmpty {
                schema: schema.to_owned(),
            });
        }

        let mut reader = LineReader::new(input);
        let mut import = Import {
            schema,
            checkpoints: Vec::new(),
            inserted: 0,
        };
        let mut batch = Batch::default();
        while let Some(line) = reader.next().await? {
            match line {
                Line::Header { .. } | Line::Stream { .. } | Line::Manifest { .. } => {}
                Line::Checkpoint {
                    projection,
                    covers,
                    updated_at,
                    ..
                } => import.checkpoints.push(Checkpoint {
                    projection,
                    covers,
                    updated_at,
                    position: None,
                }),
                Line::Event {
                    id,
                    stream,
                    version,
                    name,
                    event_version,
                    payload,
                    metadata,
                    recorded_at,
                    ..
                } => {
                    batch.ids.push(id);
                    batch.streams.push(stream);
                    batch.versions.push(version);
                    batch.names.push(name);
                    batch.event_versions.push(event_version);
                    batch.payloads.push(payload);
                    batch.metadata.push(metadata);
                    batch.recorded_at.push(recorded_at);
                    if batch.len() == BATCH {
                        import.insert(&mut tx, &mut batch).await?;
                        progress(import.inserted);
                    }
                }
                Line::Snapshot {
                    stream,
                    version,
                    snapshot_version,
                    fingerprint,
                    payload,
                    saved_at,
                } => {
                    import.insert(&mut tx, &mut batch).await?;
                    sqlx::query(&format!(
                        "INSERT INTO {schema}.snapshots
                             (stream_id, version, snapshot_version, fingerprint, payload, saved_at)
                         VALUES ($1, $2, $3, $4, $5::json, $6)"
                    ))
                    .bind(stream)
                    .bind(version)
                    .bind(snapshot_version)
                    .bind(fingerprint)
                    .bind(payload)
                    .bind(saved_at)
                    .execute(&mut *tx)
                    .await?;
                }
                Line::IdempotencyKey {
                    key,
                    stream,
                    first_version,
                    last_version,
                    wrote_events,
                    request_digest,
                    created_at,
                } => {
                    import.insert(&mut tx, &mut batch).await?;
                    // The key's events are in the table now: their new positions.
                    sqlx::query(&format!(
                        "INSERT INTO {schema}.idempotency_keys
                             (key, stream_id, first_version, last_version, transaction_id,
                              first_sequence, last_sequence, request_digest, created_at)
                         SELECT $1, $2, $3, $4, f.transaction_id, f.sequence, l.sequence, $6, $7
                         FROM (SELECT 1) AS one
                         LEFT JOIN {schema}.events f
                             ON $5 AND f.stream_id = $2 AND f.version = $3
                         LEFT JOIN {schema}.events l
                             ON $5 AND l.stream_id = $2 AND l.version = $4"
                    ))
                    .bind(key)
                    .bind(stream)
                    .bind(first_version)
                    .bind(last_version)
                    .bind(wrote_events)
                    .bind(request_digest)
                    .bind(created_at)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        import.insert(&mut tx, &mut batch).await?;
        progress(import.inserted);
        let summary = reader.finish()?;

        for checkpoint in &import.checkpoints {
            let (transaction_id, sequence) = match (checkpoint.covers, checkpoint.position) {
                (0, _) => (0, 0),
                (_, Some(position)) => position,
                (covers, None) => {
                    return Err(BackupError::Corrupt {
                        line: 0,
                        reason: format!(
                            "projection `{}` covers {covers} events, the backup holds {}",
                            checkpoint.projection, import.inserted
                        ),
                    });
                }
            };
            sqlx::query(&format!(
                "INSERT INTO {schema}.checkpoints (projection, transaction_id, sequence, updated_at)
                 VALUES ($1, $2, $3, $4)"
            ))
            .bind(&checkpoint.projection)
            .bind(transaction_id)
            .bind(sequence)
            .bind(checkpoint.updated_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(summary)
    }
}
