-- Moves the checkpoint from ($2, $3) to ($4, $5); a missing checkpoint is at (0, 0).
-- Affects no row when the checkpoint is elsewhere.
INSERT INTO {schema}.checkpoints (projection, transaction_id, sequence)
SELECT $1, $4, $5
WHERE ($2::bigint, $3::bigint) = (0, 0)
   OR EXISTS (
       SELECT 1 FROM {schema}.checkpoints
       WHERE projection = $1 AND (transaction_id, sequence) = ($2, $3)
   )
ON CONFLICT (projection) DO UPDATE
SET transaction_id = EXCLUDED.transaction_id, sequence = EXCLUDED.sequence, updated_at = now()
WHERE (checkpoints.transaction_id, checkpoints.sequence) = ($2, $3)
