-- Appends a batch to a stream that must be at version $2 (0: no stream yet), with no
-- idempotency key, in one plain statement. The insert writes versions $2 + 1, $2 + 2, …:
-- if the stream is past $2, the primary key refuses version $2 + 1 (unique violation); if
-- it is short of $2 (no event $2), nothing is inserted and the count is 0. $7 is the events
-- table in which the store has just seen event $2 of the stream (0: not seen): a stream never
-- loses an event, so the lookup of event $2 is then skipped, as long as the table is still
-- that one (its OID is resolved when the statement is planned).
WITH inserted AS (
    INSERT INTO {schema}.events (stream_id, version, name, event_version, payload, metadata)
    SELECT $1, $2::bigint + t.i, t.name, t.event_version, t.payload::json, $6::jsonb
    FROM unnest($3::text[], $4::integer[], $5::text[])
        WITH ORDINALITY AS t(name, event_version, payload, i)
    WHERE '{schema}.events'::regclass::oid = $7::oid OR $2::bigint = 0
       OR EXISTS (SELECT 1 FROM {schema}.events e WHERE e.stream_id = $1 AND e.version = $2::bigint)
    ORDER BY t.i
    RETURNING sequence, transaction_id
)
-- Every inserted row has the statement's transaction id; `min(xid8)` would need PostgreSQL 15.
SELECT count(*) AS inserted, (array_agg(transaction_id))[1] AS transaction_id,
       min(sequence) AS first_sequence, max(sequence) AS last_sequence
FROM inserted
