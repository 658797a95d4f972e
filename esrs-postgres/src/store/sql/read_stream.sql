SELECT sequence, transaction_id, version, name, event_version, payload, metadata, recorded_at,
       event_id
FROM {schema}.events
WHERE stream_id = $1 AND version >= $2 AND version <= $3
ORDER BY version
