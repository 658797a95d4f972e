-- The events an append wrote, read back in the append's own transaction.
SELECT sequence, transaction_id::text::bigint, version, name, event_version, payload::text,
       metadata, recorded_at
FROM {schema}.events
WHERE stream_id = $1 AND version BETWEEN $2 AND $3
ORDER BY version
