-- The snapshot row (if any) first, then the events after its version.
WITH snapshot AS (
    SELECT version, payload
    FROM {schema}.snapshots
    WHERE stream_id = $1 AND snapshot_version = $2 AND fingerprint = $3
)
SELECT true AS is_snapshot, NULL::bigint AS sequence, NULL::xid8 AS transaction_id, version,
       NULL::text AS name, NULL::integer AS event_version, payload, NULL::jsonb AS metadata,
       NULL::timestamptz AS recorded_at
FROM snapshot
UNION ALL
(
    SELECT false, sequence, transaction_id, version, name, event_version, payload, metadata,
           recorded_at
    FROM {schema}.events
    WHERE stream_id = $1 AND version > coalesce((SELECT version FROM snapshot), 0)
    ORDER BY version
)
-- The order of a UNION ALL's rows is undefined without an ORDER BY of its own (a parallel
-- plan may interleave its branches). The snapshot's version is below every event's (the
-- WHERE above), so ordering by version puts the snapshot first; PostgreSQL merges the
-- two sorted branches without sorting again.
ORDER BY version
