-- The horizon of a filtered read's next page: the oldest running transaction (every
-- transaction below it has ended, so the log below it is final), and the last event of the
-- whole log below it, which a page that comes back short has got through.
SELECT h.horizon, t.transaction_id, t.sequence
FROM (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS horizon) AS h
LEFT JOIN LATERAL (
    SELECT transaction_id, sequence
    FROM {schema}.events
    WHERE transaction_id < h.horizon
    ORDER BY transaction_id DESC, sequence DESC
    LIMIT 1
) AS t ON true
