-- A page of a filtered read whose events are rare: the next $5 events after the position
-- stored under one of the names $4, below the horizon $3 (a transaction id below which every
-- transaction has ended), found name by name through events_by_name, so that the
-- rows of other names are not read. $6, $7: the shard's count and index (NULL: every
-- stream), as in read_log_window.sql.
SELECT e.sequence, e.transaction_id, e.version, e.name, e.event_version, e.payload,
       e.metadata, e.recorded_at, e.event_id, e.stream_id
FROM unnest($4::text[]) AS n(name)
CROSS JOIN LATERAL (
    SELECT sequence, transaction_id, version, name, event_version, payload, metadata,
           recorded_at, event_id, stream_id
    FROM {schema}.events
    WHERE name = n.name
      AND (name, transaction_id, sequence) > (n.name, $1, $2)
      AND transaction_id < $3
      AND ($6::bigint IS NULL
           OR ('x' || substr(md5(stream_id), 1, 8))::bit(32)::bigint % $6::bigint = $7::bigint)
    -- The name is fixed: this is the index's order, which the scan returns as it is. The
    -- limit is not a constant to the planner (it then expects a tenth of the rows), so that
    -- it walks the index and stops at the page's end rather than gathering every row of the
    -- name with a bitmap and sorting them.
    ORDER BY name, transaction_id, sequence
    LIMIT (SELECT $5::bigint)
) AS e
ORDER BY e.transaction_id, e.sequence
LIMIT $5
