-- Keeps the newer snapshot of the same key; a snapshot of another key replaces the old one.
INSERT INTO {schema}.snapshots (stream_id, version, snapshot_version, fingerprint, payload)
VALUES ($1, $2, $3, $4, $5::json)
ON CONFLICT (stream_id) DO UPDATE
SET version = EXCLUDED.version,
    snapshot_version = EXCLUDED.snapshot_version,
    fingerprint = EXCLUDED.fingerprint,
    payload = EXCLUDED.payload,
    saved_at = now()
WHERE NOT (
    snapshots.snapshot_version = EXCLUDED.snapshot_version
    AND snapshots.fingerprint = EXCLUDED.fingerprint
    AND snapshots.version >= EXCLUDED.version
)
