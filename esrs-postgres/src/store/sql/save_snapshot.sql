-- Saves a snapshot by the rule of `EventStore::save_snapshot` (`esrs_core::keep_snapshot`):
-- it replaces the snapshot of its key (stream, snapshot version, fingerprint) only if newer,
-- and the stream then keeps this key and the $6 - 1 other keys saved most recently.
-- The DELETE sees the table as it was before the INSERT, so it leaves this key alone.
WITH saved AS (
    INSERT INTO {schema}.snapshots (stream_id, version, snapshot_version, fingerprint, payload)
    VALUES ($1, $2, $3, $4, $5::json)
    ON CONFLICT (stream_id, snapshot_version, fingerprint) DO UPDATE
    SET version = EXCLUDED.version,
        payload = EXCLUDED.payload,
        saved_at = now()
    WHERE snapshots.version < EXCLUDED.version
)
DELETE FROM {schema}.snapshots s
WHERE s.stream_id = $1
  AND (s.snapshot_version, s.fingerprint) <> ($3, $4)
  AND (s.snapshot_version, s.fingerprint) NOT IN (
      SELECT o.snapshot_version, o.fingerprint
      FROM {schema}.snapshots o
      WHERE o.stream_id = $1 AND (o.snapshot_version, o.fingerprint) <> ($3, $4)
      ORDER BY o.saved_at DESC, o.version DESC
      LIMIT $6 - 1
  )
