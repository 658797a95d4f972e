-- The append function's row, its columns named as the idempotency keys table names them.
SELECT r_kind AS kind, r_stream AS stream_id, r_first_version AS first_version,
       r_last_version AS last_version, r_transaction_id AS transaction_id,
       r_first_sequence AS first_sequence, r_last_sequence AS last_sequence,
       r_digest AS request_digest
FROM {schema}.append($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10::float8)
