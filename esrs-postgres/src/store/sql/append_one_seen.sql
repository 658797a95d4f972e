-- Appends one event to a stream whose event $2 the store has just seen (a stream never loses
-- an event, so the stream is at $2 or past it): `append_one.sql` without the lookup of event
-- $2. If the stream is past $2, the primary key refuses version $2 + 1 (unique violation).
-- $7 is the events table the store saw event $2 in: in a table created since (the schema
-- dropped and migrated again), event $2 is looked up after all. The table's OID is resolved
-- when the statement is planned, and the lookup is not run when the table is the one seen.
INSERT INTO {schema}.events (stream_id, version, name, event_version, payload, metadata)
SELECT $1, $2::bigint + 1, $3, $4, $5::json, $6::jsonb
WHERE '{schema}.events'::regclass::oid = $7::oid
   OR EXISTS (SELECT 1 FROM {schema}.events e WHERE e.stream_id = $1 AND e.version = $2::bigint)
RETURNING sequence, transaction_id, tableoid
