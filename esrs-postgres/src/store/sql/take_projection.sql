-- Makes the caller, which has just taken the projection's lock, its next owner; waits for
-- a save of the previous owner in progress to commit. Returns the new epoch.
INSERT INTO {schema}.projection_owners (projection, epoch)
VALUES ($1, 1)
ON CONFLICT (projection) DO UPDATE SET epoch = projection_owners.epoch + 1
RETURNING epoch
