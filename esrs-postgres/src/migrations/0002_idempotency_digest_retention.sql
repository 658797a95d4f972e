-- Idempotency keys remember a digest of their request, so that a key reused for another
-- request is refused, and expire after the store's retention.
-- `{schema}` is replaced by the store's validated schema name.

-- NULL for keys stored before this migration: they match any request on their stream.
ALTER TABLE {schema}.idempotency_keys ADD COLUMN request_digest text;

-- The sweep of expired keys reads the oldest first.
CREATE INDEX idempotency_keys_created_at ON {schema}.idempotency_keys (created_at);

-- The append of migration 1 with two more parameters:
--
-- p_digest: the request's digest, stored with p_key and returned with a key's original
--   outcome (r_kind 'deduplicated', r_digest) for the caller to compare;
-- p_retention_secs: how long keys are remembered. An older key is deleted here and the
--   request is appended as a new one. Concurrent requests with the same expired key queue
--   on the deleted row; the first inserts the key again, the others then find it (or lose
--   the race on idempotency_keys_key and read it).
--
-- The function of migration 1 stays, for programs of the previous release during a
-- rolling upgrade; it neither stores nor checks digests.
CREATE FUNCTION {schema}.append(
    p_stream text,
    p_expected bigint,
    p_names text[],
    p_event_versions integer[],
    p_payloads text[],
    p_metadata jsonb,
    p_key text,
    p_notify boolean,
    p_digest text,
    p_retention_secs double precision
) RETURNS TABLE (
    r_kind text,
    r_stream text,
    r_first_version bigint,
    r_last_version bigint,
    r_transaction_id xid8,
    r_first_sequence bigint,
    r_last_sequence bigint,
    r_digest text
)
LANGUAGE plpgsql AS $$
DECLARE
    v_count integer := coalesce(cardinality(p_names), 0);
    v_current bigint;
    v_xid xid8;
    v_first bigint;
    v_last bigint;
BEGIN
    -- The stream's version first, then the key: a concurrent request with the same key
    -- whose events this statement saw has committed its key too, so the key is found.
    SELECT coalesce(max(e.version), 0) INTO v_current
    FROM {schema}.events e
    WHERE e.stream_id = p_stream;

    IF p_key IS NOT NULL THEN
        DELETE FROM {schema}.idempotency_keys k
        WHERE k.key = p_key
          AND k.created_at < now() - make_interval(secs => p_retention_secs);
        RETURN QUERY
            SELECT 'deduplicated', k.stream_id, k.first_version, k.last_version,
                   k.transaction_id, k.first_sequence, k.last_sequence, k.request_digest
            FROM {schema}.idempotency_keys k
            WHERE k.key = p_key;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;

    IF p_expected IS NOT NULL AND p_expected <> v_current THEN
        RETURN QUERY SELECT 'conflict', p_stream, v_current + 1, v_current,
                            NULL::xid8, NULL::bigint, NULL::bigint, NULL::text;
        RETURN;
    END IF;

    IF v_count > 0 THEN
        v_xid := pg_current_xact_id();
        WITH inserted AS (
            INSERT INTO {schema}.events
                (transaction_id, stream_id, version, name, event_version, payload, metadata)
            SELECT v_xid, p_stream, v_current + t.i, t.name, t.event_version, t.payload::json, p_metadata
            FROM unnest(p_names, p_event_versions, p_payloads)
                WITH ORDINALITY AS t(name, event_version, payload, i)
            ORDER BY t.i
            RETURNING sequence
        )
        SELECT min(inserted.sequence), max(inserted.sequence) INTO v_first, v_last
        FROM inserted;
        IF p_notify THEN
            PERFORM pg_notify('{schema}_events', '');
        END IF;
    END IF;

    IF p_key IS NOT NULL THEN
        INSERT INTO {schema}.idempotency_keys
            (key, stream_id, first_version, last_version, transaction_id, first_sequence,
             last_sequence, request_digest)
        VALUES (p_key, p_stream, v_current + 1, v_current + v_count, v_xid, v_first, v_last,
                p_digest);
    END IF;

    RETURN QUERY SELECT 'appended', p_stream, v_current + 1, v_current + v_count,
                        v_xid, v_first, v_last, p_digest;
END
$$;
