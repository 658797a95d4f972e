-- Whether a session of this database holds the advisory lock of the key hashed from $1,
-- and the key. A `bigint` advisory key is shown in `pg_locks` split in two: its high half
-- as `classid`, its low half as `objid`, with `objsubid` 1.
SELECT EXISTS (
        SELECT 1 FROM pg_locks
        WHERE locktype = 'advisory'
          AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND classid = ((k >> 32) & 4294967295)::oid
          AND objid = (k & 4294967295)::oid
          AND objsubid = 1
    ) AS held,
    k AS key
FROM hashtextextended($1, 0) AS k
