SELECT r_kind, r_stream, r_first_version, r_last_version,
       r_transaction_id, r_first_sequence, r_last_sequence, r_digest
FROM {schema}.append($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10::float8)
