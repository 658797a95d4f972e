-- Appends one event to a stream that must be at version $2 (0: no stream yet), with no
-- idempotency key: `append_expected.sql` for a batch of one, without the arrays. If the
-- stream is past $2, the primary key refuses version $2 + 1 (unique violation); if it is
-- short of $2 (no event $2), nothing is inserted and no row is returned. When the store has
-- just seen event $2 of the stream, `append_one_seen.sql` does the same without the lookup.
-- The table's OID comes back with the row: the store records what it sees with it.
INSERT INTO {schema}.events (stream_id, version, name, event_version, payload, metadata)
SELECT $1, $2::bigint + 1, $3, $4, $5::json, $6::jsonb
WHERE $2::bigint = 0
   OR EXISTS (SELECT 1 FROM {schema}.events e WHERE e.stream_id = $1 AND e.version = $2::bigint)
RETURNING sequence, transaction_id, tableoid
