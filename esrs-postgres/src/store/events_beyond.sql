-- Whether committed events after the position exist but are held back by an older
-- transaction that is still running.
SELECT EXISTS (
    SELECT 1
    FROM {schema}.events
    WHERE (transaction_id, sequence) > ($1, $2)
      AND transaction_id >= pg_snapshot_xmin(pg_current_snapshot())
)
