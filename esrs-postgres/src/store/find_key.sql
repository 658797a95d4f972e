SELECT stream_id, first_version, last_version, transaction_id, first_sequence, last_sequence
FROM {schema}.idempotency_keys
WHERE key = $1
