-- Appends one event to a stream whose event $2 the store has just seen (a stream never loses
-- an event, so the stream is at $2 or past it): `append_one.sql` without the lookup of event
-- $2. If the stream is past $2, the primary key refuses version $2 + 1 (unique violation).
INSERT INTO {schema}.events (stream_id, version, name, event_version, payload, metadata)
VALUES ($1, $2::bigint + 1, $3, $4, $5::json, $6::jsonb)
RETURNING sequence, transaction_id
