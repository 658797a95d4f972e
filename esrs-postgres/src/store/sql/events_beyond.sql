-- Whether committed events lie after the position, and whether some of them are held back
-- by an older transaction that is still running. Committed events after the position and
-- none held back: the transaction that held them back has ended since the last page, and
-- they are readable now.
SELECT EXISTS (
           SELECT 1
           FROM {schema}.events
           WHERE (transaction_id, sequence) > ($1, $2)
       ) AS beyond,
       EXISTS (
           SELECT 1
           FROM {schema}.events
           WHERE (transaction_id, sequence) > ($1, $2)
             AND transaction_id >= pg_snapshot_xmin(pg_current_snapshot())
       ) AS held_back
