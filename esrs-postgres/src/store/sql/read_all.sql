-- Only transactions below the oldest one still running are read: every event they wrote is
-- visible now, and no event can later appear before the last one returned.
SELECT sequence, transaction_id, version, name, event_version, payload, metadata, recorded_at,
       event_id, stream_id
FROM {schema}.events
WHERE (transaction_id, sequence) > ($1, $2)
  AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY transaction_id, sequence
LIMIT $3
