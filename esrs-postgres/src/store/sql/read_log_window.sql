-- A window of the global log for a filtered read whose events are frequent: the next $3
-- rows after the position, in commit-safe order as read_all reads them, each saying whether
-- the filter matches it. Only a matched row carries its event; a skipped row carries its
-- position alone, so that the reader gets through it without its payload crossing the wire.
-- $4: the names matched (NULL: every name); $5, $6: the shard's count and index (NULL: every
-- stream), the shard of a stream being the first 32 bits of MD5(stream id) modulo the count.
SELECT matched, sequence, transaction_id,
       CASE WHEN matched THEN version END AS version,
       CASE WHEN matched THEN name END AS name,
       CASE WHEN matched THEN event_version END AS event_version,
       CASE WHEN matched THEN payload END AS payload,
       CASE WHEN matched THEN metadata END AS metadata,
       CASE WHEN matched THEN recorded_at END AS recorded_at,
       CASE WHEN matched THEN event_id END AS event_id,
       CASE WHEN matched THEN stream_id END AS stream_id
FROM (
    SELECT sequence, transaction_id, version, name, event_version, payload, metadata,
           recorded_at, event_id, stream_id,
           ($4::text[] IS NULL OR name = ANY ($4::text[]))
           AND ($5::bigint IS NULL
                OR ('x' || substr(md5(stream_id), 1, 8))::bit(32)::bigint % $5::bigint
                   = $6::bigint) AS matched
    FROM {schema}.events
    WHERE (transaction_id, sequence) > ($1, $2)
      AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY transaction_id, sequence
    LIMIT $3
) AS w
ORDER BY transaction_id, sequence
