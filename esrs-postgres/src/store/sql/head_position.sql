-- The last event of the global log that read_all can return now.
SELECT transaction_id, sequence
FROM {schema}.events
WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY transaction_id DESC, sequence DESC
LIMIT 1
