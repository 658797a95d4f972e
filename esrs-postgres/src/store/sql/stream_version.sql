SELECT coalesce(max(version), 0) AS version FROM {schema}.events WHERE stream_id = $1
