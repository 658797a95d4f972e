-- Appends a batch to a stream that must be at version $2 (0: no stream yet), with no
-- idempotency key, in one plain statement. The insert writes versions $2 + 1, $2 + 2, …:
-- if the stream is past $2, the primary key refuses version $2 + 1 (unique violation); if
-- it is short of $2 (no event $2), nothing is inserted and the count is 0. $7 says that the
-- store has just seen event $2 of the stream (a stream never loses an event): the lookup of
-- event $2 is then skipped.
WITH inserted AS (
    INSERT INTO {schema}.events (stream_id, version, name, event_version, payload, metadata)
    SELECT $1, $2::bigint + t.i, t.name, t.event_version, t.payload::json, $6::jsonb
    FROM unnest($3::text[], $4::integer[], $5::text[])
        WITH ORDINALITY AS t(name, event_version, payload, i)
    WHERE $7::boolean OR $2::bigint = 0
       OR EXISTS (SELECT 1 FROM {schema}.events e WHERE e.stream_id = $1 AND e.version = $2::bigint)
    ORDER BY t.i
    RETURNING sequence, transaction_id
)
-- Every inserted row has the statement's transaction id; `min(xid8)` would need PostgreSQL 15.
SELECT count(*), (array_agg(transaction_id))[1], min(sequence), max(sequence)
FROM inserted
