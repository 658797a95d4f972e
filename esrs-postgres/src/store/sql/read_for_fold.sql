-- Only the columns a fold needs: version, name, event version, payload.
SELECT version, name, event_version, payload
FROM {schema}.events
WHERE stream_id = $1 AND version >= $2 AND version <= $3
ORDER BY version
