SELECT version, payload
FROM {schema}.snapshots
WHERE stream_id = $1 AND snapshot_version = $2 AND fingerprint = $3
