-- Event identity: every event has an id, unique and stable, given when it is appended and
-- kept by backups and restores (`esrs export` / `esrs import`). A random (version 4) UUID
-- from the server, so that no writer needs to coordinate; rows written before this migration
-- get one now (adding the column rewrites the table once, under its lock).
ALTER TABLE {schema}.events ADD COLUMN event_id uuid NOT NULL DEFAULT gen_random_uuid();
