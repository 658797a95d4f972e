-- Personal data that can be forgotten (crypto-shredding). Unlike the events table, these
-- tables allow deleting: a forget deletes the subject's key row.

-- One data key per subject, wrapped by the application's master key (envelope
-- encryption): a dump of this table alone reveals no key.
CREATE TABLE {schema}.personal_keys (
    subject text PRIMARY KEY,
    wrapped_key bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The subjects forgotten, kept for good: they outlive the keys, so a key restored from a
-- backup is never used again and a forgotten subject never gets a new key.
CREATE TABLE {schema}.forgotten_subjects (
    subject text PRIMARY KEY,
    forgotten_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION {schema}.refuse_unforgetting() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'esrs: a forgotten subject stays forgotten (% on %.%)',
        TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER forgotten_subjects_kept
    BEFORE UPDATE OR DELETE ON {schema}.forgotten_subjects
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.refuse_unforgetting();
CREATE TRIGGER forgotten_subjects_no_truncate
    BEFORE TRUNCATE ON {schema}.forgotten_subjects
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.refuse_unforgetting();

-- The streams each subject's personal data was written to: a forget deletes their
-- snapshots, which hold states in clear.
CREATE TABLE {schema}.personal_streams (
    subject text NOT NULL,
    stream_id text NOT NULL,
    PRIMARY KEY (subject, stream_id)
);

-- The key-check value of the master key the keys are wrapped with: a store opened with
-- another master key is refused at once.
CREATE TABLE {schema}.personal_master_key (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    check_value bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
