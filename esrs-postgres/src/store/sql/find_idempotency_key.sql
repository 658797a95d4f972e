-- What the store remembers of the append made with key $1, unless the key is older than
-- the retention of $2 seconds.
SELECT stream_id, first_version, last_version, transaction_id, first_sequence, last_sequence,
       request_digest
FROM {schema}.idempotency_keys
WHERE key = $1 AND created_at >= now() - make_interval(secs => $2::float8)
