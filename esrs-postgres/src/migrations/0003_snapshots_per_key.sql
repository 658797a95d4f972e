-- Snapshots are kept per key: (stream, snapshot version, fold fingerprint). Two versions of a
-- program whose folds differ keep a snapshot each instead of overwriting each other's; the
-- save prunes a stream's keys to the most recent few (`esrs_core::SNAPSHOT_KEYS_PER_STREAM`).
-- Every existing row keeps its place: one row per stream is one row per key.
ALTER TABLE {schema}.snapshots DROP CONSTRAINT snapshots_pkey;
ALTER TABLE {schema}.snapshots
    ADD CONSTRAINT snapshots_key PRIMARY KEY (stream_id, snapshot_version, fingerprint);
