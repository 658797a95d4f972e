-- The stream's snapshot of a key ($2, $3) if its version lies in $4..=$5, first; then the
-- events after its version (or from $4 when there is none) up to $5, with only the columns
-- a fold needs.
WITH snapshot AS (
    SELECT version, payload
    FROM {schema}.snapshots
    WHERE stream_id = $1 AND snapshot_version = $2 AND fingerprint = $3
      AND version >= $4 AND version <= $5
)
SELECT true AS is_snapshot, version, NULL::text AS name, NULL::integer AS event_version, payload
FROM snapshot
UNION ALL
(
    SELECT false, version, name, event_version, payload
    FROM {schema}.events
    WHERE stream_id = $1 AND version > coalesce((SELECT version FROM snapshot), $4 - 1)
      AND version <= $5
    ORDER BY version
)
-- The order of a UNION ALL's rows is undefined without an ORDER BY of its own (a parallel
-- plan may interleave its branches). The snapshot's version is below every event's (the
-- WHERE above), so ordering by version puts the snapshot first; PostgreSQL merges the
-- two sorted branches without sorting again.
ORDER BY version
