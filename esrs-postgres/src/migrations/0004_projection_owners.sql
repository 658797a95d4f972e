-- Who runs each projection. `epoch` counts the takings of the projection's lock: a runner
-- that takes the lock makes itself the next owner, and saves its checkpoint only while it
-- is still the owner (its save locks the owner row until it commits). A runner whose lock
-- was lost (its connection died, and another runner took the lock) thus fails at its next
-- save instead of committing beside the new one.
CREATE TABLE {schema}.projection_owners (
    projection text PRIMARY KEY,
    epoch bigint NOT NULL
);
