//! The store's statements, read from `sql/` and with its schema name filled in.

/// The statements of a store, with its schema name filled in.
pub(super) struct Sql {
    pub(super) append: String,
    pub(super) append_expected: String,
    pub(super) append_one: String,
    pub(super) append_one_seen: String,
    pub(super) read_stream: String,
    pub(super) read_all: String,
    pub(super) events_after: String,
    pub(super) events_beyond: String,
    pub(super) head_position: String,
    pub(super) read_for_fold: String,
    pub(super) read_for_fold_with_snapshot: String,
    pub(super) stream_version: String,
    pub(super) find_idempotency_key: String,
    pub(super) sweep_idempotency_keys: String,
    pub(super) save_snapshot: String,
    pub(super) load_snapshot: String,
    pub(super) load_checkpoint: String,
    pub(super) take_projection: String,
    pub(super) move_checkpoint: String,
    pub(super) projection_owner: String,
}

impl Sql {
    /// The statements for `schema`.
    pub(super) fn new(schema: &str) -> Self {
        let fill = |sql: &str| sql.replace("{schema}", schema);
        Self {
            append: fill(include_str!("sql/append.sql")),
            append_expected: fill(include_str!("sql/append_expected.sql")),
            append_one: fill(include_str!("sql/append_one.sql")),
            append_one_seen: fill(include_str!("sql/append_one_seen.sql")),
            read_stream: fill(include_str!("sql/read_stream.sql")),
            read_all: fill(include_str!("sql/read_all.sql")),
            events_after: fill(include_str!("sql/events_after.sql")),
            events_beyond: fill(include_str!("sql/events_beyond.sql")),
            head_position: fill(include_str!("sql/head_position.sql")),
            read_for_fold: fill(include_str!("sql/read_for_fold.sql")),
            read_for_fold_with_snapshot: fill(include_str!("sql/read_for_fold_with_snapshot.sql")),
            stream_version: fill(include_str!("sql/stream_version.sql")),
            find_idempotency_key: fill(include_str!("sql/find_idempotency_key.sql")),
            sweep_idempotency_keys: fill(include_str!("sql/sweep_idempotency_keys.sql")),
            save_snapshot: fill(include_str!("sql/save_snapshot.sql")),
            load_snapshot: fill(include_str!("sql/load_snapshot.sql")),
            load_checkpoint: fill(include_str!("sql/load_checkpoint.sql")),
            take_projection: fill(include_str!("sql/take_projection.sql")),
            move_checkpoint: fill(include_str!("sql/move_checkpoint.sql")),
            projection_owner: fill(include_str!("sql/projection_owner.sql")),
        }
    }
}
