-- Deletes up to $2 idempotency keys older than the retention of $1 seconds. Rows locked by
-- an append that is renewing an expired key are skipped, so the sweep never waits for an
-- append, and an append waits at most for one short batch.
DELETE FROM {schema}.idempotency_keys
WHERE key IN (
    SELECT key FROM {schema}.idempotency_keys
    WHERE created_at < now() - make_interval(secs => $1::float8)
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
