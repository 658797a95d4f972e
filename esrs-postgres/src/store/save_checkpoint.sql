INSERT INTO {schema}.checkpoints (projection, commit, sequence)
VALUES ($1, $2, $3)
ON CONFLICT (projection) DO UPDATE
SET commit = EXCLUDED.commit, sequence = EXCLUDED.sequence, updated_at = now()
