//! Snapshots: loaded by their key, saved by the replacement rule of
//! [`EventStore::save_snapshot`](esrs_core::EventStore::save_snapshot).

use esrs_core::StreamId;
use esrs_core::store::{Snapshot, SnapshotKey};
use sqlx::Row;

use super::PgStore;
use super::read::{fingerprint, payload, signed, unsigned};
use super::sql::pg_type::{INT8, JSON};
use super::sql::{Column, index};
use crate::error::to_core;

/// The columns [`load_snapshot`] reads.
pub(crate) const SNAPSHOT_COLUMNS: &[Column] =
    &[Column::new("version", INT8), Column::new("payload", JSON)];
const VERSION: usize = index(SNAPSHOT_COLUMNS, "version");
const PAYLOAD: usize = index(SNAPSHOT_COLUMNS, "payload");

/// The snapshot of `stream` saved under `key`, if there is one.
pub(super) async fn load_snapshot(
    store: &PgStore,
    stream: &StreamId,
    key: SnapshotKey,
) -> esrs_core::Result<Option<Snapshot>> {
    let mut lease = store.connections().lease().await.map_err(to_core)?;
    let row = sqlx::query(&store.sql().load_snapshot)
        .bind(stream.as_str())
        .bind(i64::from(key.schema_version))
        .bind(fingerprint(key.fingerprint))
        .fetch_optional(&mut lease)
        .await
        .map_err(to_core)?;
    drop(lease);
    let Some(row) = row else {
        return Ok(None);
    };
    let version: i64 = row.try_get(VERSION).map_err(to_core)?;
    let payload = payload(&row, PAYLOAD).map_err(to_core)?;
    Ok(Some(Snapshot::new(
        stream.clone(),
        unsigned(version),
        key,
        payload,
    )))
}

/// Saves `snapshot` if it is newer than the one of its key, and keeps the stream's
/// [`SNAPSHOT_KEYS_PER_STREAM`](esrs_core::store::SNAPSHOT_KEYS_PER_STREAM) most recent keys.
pub(super) async fn save_snapshot(store: &PgStore, snapshot: Snapshot) -> esrs_core::Result<()> {
    let mut lease = store.connections().lease().await.map_err(to_core)?;
    sqlx::query(&store.sql().save_snapshot)
        .bind(snapshot.stream.as_str())
        .bind(signed(snapshot.version))
        .bind(i64::from(snapshot.key.schema_version))
        .bind(fingerprint(snapshot.key.fingerprint))
        .bind(snapshot.payload.get())
        .bind(esrs_core::store::SNAPSHOT_KEYS_PER_STREAM as i64)
        .execute(&mut lease)
        .await
        .map_err(to_core)?;
    Ok(())
}

/// Deletes every snapshot of `stream`.
pub(super) async fn delete_snapshots(store: &PgStore, stream: &StreamId) -> esrs_core::Result<()> {
    let mut lease = store.connections().lease().await.map_err(to_core)?;
    let schema = store.schema();
    sqlx::query(&format!(
        "DELETE FROM {schema}.snapshots WHERE stream_id = $1"
    ))
    .bind(stream.as_str())
    .execute(&mut lease)
    .await
    .map_err(to_core)?;
    Ok(())
}
