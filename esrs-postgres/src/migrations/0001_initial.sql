-- The event log, snapshots, idempotency keys and projection checkpoints.
-- `{schema}` is replaced by the store's validated schema name.

-- Every event, in one append-only log. A stream's events have versions 1, 2, 3 … and the
-- primary key makes two writers of the same version collide. `sequence` numbers events in
-- the order they were inserted (with gaps, not in commit order); `transaction_id` is the
-- writing transaction, which lets readers of the global log wait for late commits.
CREATE TABLE {schema}.events (
    sequence bigint GENERATED ALWAYS AS IDENTITY,
    transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
    stream_id text NOT NULL,
    version bigint NOT NULL,
    name text NOT NULL,
    event_version integer NOT NULL,
    -- `json`, not `jsonb`: the payload is stored and returned byte for byte as written.
    payload json NOT NULL,
    -- NULL when the append carried no metadata.
    metadata jsonb,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_stream_version PRIMARY KEY (stream_id, version),
    CONSTRAINT events_version_positive CHECK (version >= 1)
);

-- The global log's order, and the uniqueness of sequence numbers.
CREATE UNIQUE INDEX events_global_order ON {schema}.events (transaction_id, sequence);

-- History is append-only: the database refuses any change to stored events.
CREATE FUNCTION {schema}.refuse_event_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only: % on %.% is refused', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation',
              HINT = 'record a new event that corrects or compensates the old one';
END
$$;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE ON {schema}.events
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.refuse_event_changes();

CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON {schema}.events
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.refuse_event_changes();

-- The latest snapshot of each stream.
CREATE TABLE {schema}.snapshots (
    stream_id text PRIMARY KEY,
    version bigint NOT NULL,
    snapshot_version bigint NOT NULL,
    fingerprint bigint NOT NULL,
    payload json NOT NULL,
    saved_at timestamptz NOT NULL DEFAULT now()
);

-- The outcome of every append made with an idempotency key.
CREATE TABLE {schema}.idempotency_keys (
    key text NOT NULL,
    stream_id text NOT NULL,
    first_version bigint NOT NULL,
    last_version bigint NOT NULL,
    -- NULL when the append wrote no event.
    transaction_id xid8,
    first_sequence bigint,
    last_sequence bigint,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT idempotency_keys_key PRIMARY KEY (key)
);

-- Where each projection is in the global log.
CREATE TABLE {schema}.checkpoints (
    projection text PRIMARY KEY,
    commit bigint NOT NULL,
    sequence bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Appends a batch of events to one stream in one statement: the idempotency key, the
-- expected-version check and the insert happen in the caller's transaction.
--
-- p_expected: NULL for any version, else the version the stream must be at (0: no stream).
-- Returns one row; r_kind is 'appended', 'deduplicated' (the key's original outcome, whose
-- r_stream may differ from p_stream) or 'conflict' (r_last_version is the actual version).
-- A concurrent writer of the same stream version, or of the same key, makes the insert fail
-- with unique_violation (23505) on events_stream_version or idempotency_keys_key; the
-- caller then reads the key or the stream's version to tell which case it is.
CREATE FUNCTION {schema}.append(
    p_stream text,
    p_expected bigint,
    p_names text[],
    p_event_versions integer[],
    p_payloads text[],
    p_metadata jsonb,
    p_key text,
    p_notify boolean
) RETURNS TABLE (
    r_kind text,
    r_stream text,
    r_first_version bigint,
    r_last_version bigint,
    r_transaction_id xid8,
    r_first_sequence bigint,
    r_last_sequence bigint
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
        RETURN QUERY
            SELECT 'deduplicated', k.stream_id, k.first_version, k.last_version,
                   k.transaction_id, k.first_sequence, k.last_sequence
            FROM {schema}.idempotency_keys k
            WHERE k.key = p_key;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;

    IF p_expected IS NOT NULL AND p_expected <> v_current THEN
        RETURN QUERY SELECT 'conflict', p_stream, v_current + 1, v_current,
                            NULL::xid8, NULL::bigint, NULL::bigint;
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
            (key, stream_id, first_version, last_version, transaction_id, first_sequence, last_sequence)
        VALUES (p_key, p_stream, v_current + 1, v_current + v_count, v_xid, v_first, v_last);
    END IF;

    RETURN QUERY SELECT 'appended', p_stream, v_current + 1, v_current + v_count,
                        v_xid, v_first, v_last;
END
$$;
