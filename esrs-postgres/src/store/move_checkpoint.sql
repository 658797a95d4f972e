-- Moves the checkpoint from ($2, $3) to ($4, $5); a missing checkpoint is at (0, 0).
-- Affects no row when the checkpoint is elsewhere.
INSERT INTO {schema}.checkpoints (projection, commit, sequence)
SELECT $1, $4, $5
WHERE ($2::bigint, $3::bigint) = (0, 0)
   OR EXISTS (
       SELECT 1 FROM {schema}.checkpoints
       WHERE projection = $1 AND (commit, sequence) = ($2, $3)
   )
ON CONFLICT (projection) DO UPDATE
SET commit = EXCLUDED.commit, sequence = EXCLUDED.sequence, updated_at = now()
WHERE (checkpoints.commit, checkpoints.sequence) = ($2, $3)
