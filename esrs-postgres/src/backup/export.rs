//! Export: every table of a store, read in one snapshot, written line by line.

use async_compression::tokio::write::ZstdEncoder;
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt as _;
use sqlx::Row as _;
use tokio::io::{AsyncWrite, AsyncWriteExt as _, BufWriter};

use super::check::Checker;
use super::format::{FORMAT, FORMAT_VERSION, Line};
use super::{BackupError, BackupSummary};
use crate::PgStore;

/// How often the progress callback is told the number of events written.
const PROGRESS_EVERY: u64 = 1_000;

/// Writes lines, checking each as [`Checker`] would on reading.
struct Writer<W: AsyncWrite + Unpin> {
    out: ZstdEncoder<BufWriter<W>>,
    checker: Checker,
    buffer: Vec<u8>,
}

impl<W: AsyncWrite + Unpin> Writer<W> {
    async fn write(&mut self, line: Line) -> Result<(), BackupError> {
        self.checker.observe(&line)?;
        self.buffer.clear();
        serde_json::to_writer(&mut self.buffer, &line).map_err(std::io::Error::from)?;
        self.buffer.push(b'\n');
        self.out.write_all(&self.buffer).await?;
        Ok(())
    }
}

impl PgStore {
    /// Writes a backup of the store to `out` (see [`backup`](crate::backup)): every event,
    /// snapshot, idempotency key and checkpoint, as one consistent snapshot of the
    /// database, compressed; returns what it holds. The snapshots of streams that hold
    /// personal data are left out (they hold it in clear; see [`PgKeyStore`](crate::PgKeyStore)),
    /// so a backup carries personal data only as ciphertext; its keys are not in it. Appends go on meanwhile; they are not
    /// in the backup.
    pub async fn export(
        &self,
        out: impl AsyncWrite + Unpin + Send,
    ) -> Result<BackupSummary, BackupError> {
        self.export_with_progress(out, |_| {}).await
    }

    /// [`export`](Self::export), telling `progress` the number of events written so far
    /// every thousand events.
    pub async fn export_with_progress(
        &self,
        out: impl AsyncWrite + Unpin + Send,
        mut progress: impl FnMut(u64) + Send,
    ) -> Result<BackupSummary, BackupError> {
        let schema = self.schema();
        let store_schema_version = self.schema_version().await?;
        let mut writer = Writer {
            out: ZstdEncoder::new(BufWriter::new(out)),
            checker: Checker::new(),
            buffer: Vec::with_capacity(4096),
        };
        let mut tx = self.pool().begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        writer
            .write(Line::Header {
                format: FORMAT.to_owned(),
                format_version: FORMAT_VERSION,
                schema: schema.to_owned(),
                store_schema_version,
                exported_at: Utc::now(),
            })
            .await?;

        let checkpoints = sqlx::query(&format!(
            "SELECT c.projection, c.transaction_id, c.sequence, c.updated_at,
                    (SELECT count(*) FROM {schema}.events e
                     WHERE (e.transaction_id, e.sequence)
                           <= (c.transaction_id::text::xid8, c.sequence)) AS covers
             FROM {schema}.checkpoints c ORDER BY c.projection"
        ))
        .fetch_all(&mut *tx)
        .await?;
        for row in checkpoints {
            let covers: i64 = row.try_get("covers")?;
            writer
                .write(Line::Checkpoint {
                    projection: row.try_get("projection")?,
                    transaction_id: row.try_get("transaction_id")?,
                    sequence: row.try_get("sequence")?,
                    covers: covers.unsigned_abs(),
                    updated_at: row.try_get("updated_at")?,
                })
                .await?;
        }

        {
            let sql = format!(
                "SELECT transaction_id::text::bigint AS transaction_id, sequence, stream_id, version,
                        name, event_version, payload::text AS payload, metadata::text AS metadata,
                        recorded_at, event_id
                 FROM {schema}.events ORDER BY transaction_id, sequence"
            );
            let mut rows = sqlx::query(&sql).fetch(&mut *tx);
            while let Some(row) = rows.try_next().await? {
                writer
                    .write(Line::Event {
                        transaction_id: row.try_get("transaction_id")?,
                        sequence: row.try_get("sequence")?,
                        id: row.try_get("event_id")?,
                        stream: row.try_get("stream_id")?,
                        version: row.try_get("version")?,
                        name: row.try_get("name")?,
                        event_version: row.try_get("event_version")?,
                        payload: row.try_get("payload")?,
                        metadata: row.try_get("metadata")?,
                        recorded_at: row.try_get::<DateTime<Utc>, _>("recorded_at")?,
                    })
                    .await?;
                let events = writer.checker.events();
                if events % PROGRESS_EVERY == 0 {
                    progress(events);
                }
            }
        }
        progress(writer.checker.events());

        {
            // A snapshot holds its state in clear, personal data included: the snapshots of
            // streams that hold personal data (migration 6's `personal_streams`) stay out of
            // the export, which then carries personal data only as ciphertext. Snapshots are
            // only an optimisation: the restored streams fold from their events.
            let personal = if store_schema_version >= 6 {
                format!(
                    "WHERE NOT EXISTS (SELECT 1 FROM {schema}.personal_streams p
                                       WHERE p.stream_id = s.stream_id)"
                )
            } else {
                String::new()
            };
            let sql = format!(
                "SELECT stream_id, version, snapshot_version, fingerprint, payload::text AS payload,
                        saved_at
                 FROM {schema}.snapshots s {personal}
                 ORDER BY stream_id, snapshot_version, fingerprint"
            );
            let mut rows = sqlx::query(&sql).fetch(&mut *tx);
            while let Some(row) = rows.try_next().await? {
                writer
                    .write(Line::Snapshot {
                        stream: row.try_get("stream_id")?,
                        version: row.try_get("version")?,
                        snapshot_version: row.try_get("snapshot_version")?,
                        fingerprint: row.try_get("fingerprint")?,
                        payload: row.try_get("payload")?,
                        saved_at: row.try_get("saved_at")?,
                    })
                    .await?;
            }
        }

        {
            let sql = format!(
                "SELECT key, stream_id, first_version, last_version,
                        transaction_id IS NOT NULL AS wrote_events, request_digest, created_at
                 FROM {schema}.idempotency_keys ORDER BY key"
            );
            let mut rows = sqlx::query(&sql).fetch(&mut *tx);
            while let Some(row) = rows.try_next().await? {
                writer
                    .write(Line::IdempotencyKey {
                        key: row.try_get("key")?,
                        stream: row.try_get("stream_id")?,
                        first_version: row.try_get("first_version")?,
                        last_version: row.try_get("last_version")?,
                        wrote_events: row.try_get("wrote_events")?,
                        request_digest: row.try_get("request_digest")?,
                        created_at: row.try_get("created_at")?,
                    })
                    .await?;
            }
        }
        tx.commit().await?;

        for line in writer.checker.closing_lines() {
            writer.write(line).await?;
        }
        writer.out.shutdown().await?;
        writer.checker.finish()
    }

    /// What the store holds, as a backup of it would: counts and digests, to compare with
    /// a backup's ([`verify_backup`](crate::backup::verify_backup)) through
    /// [`BackupSummary::differences`]. Reads every event (it exports to nowhere).
    pub async fn summary(&self) -> Result<BackupSummary, BackupError> {
        self.export(tokio::io::sink()).await
    }
}
