-- A session-level advisory lock, held until released or the connection ends.
SELECT pg_try_advisory_lock(hashtextextended($1, 0))
