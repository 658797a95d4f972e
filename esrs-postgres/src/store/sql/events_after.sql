SELECT EXISTS (
    SELECT 1
    FROM {schema}.events
    WHERE (transaction_id, sequence) > ($1, $2)
      AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
) AS readable
