//! The store's statements, read from `sql/` and with its schema name filled in, and the
//! columns each one's decoder reads.
//!
//! The decoders read columns by position, most without sqlx's per-column type check. Each
//! decoder's columns are a [`Column`] list next to it, from which its positions are
//! computed ([`index`], [`offset`]); every statement below names the list its rows are
//! decoded with, and a test prepares every statement on a migrated schema and checks that
//! its result columns are that list, names and types, in order.

// The column lists are read by the test of the statements; the decoders next to them
// compute their positions from them.
#[cfg(test)]
use super::append::{APPEND_COLUMNS, INSERTED_COLUMNS, ONE_INSERTED_COLUMNS};
#[cfg(test)]
use super::checkpoint::CHECKPOINT_COLUMNS;
#[cfg(test)]
use super::idempotency::RECORD_COLUMNS;
#[cfg(test)]
use super::lock::{EPOCH_COLUMNS, LOCK_HELD_COLUMNS};
#[cfg(test)]
use super::read::{
    EVENT_COLUMNS, EVENTS_AFTER_COLUMNS, EVENTS_BEYOND_COLUMNS, FOLD_EVENT_COLUMNS,
    FOLD_WITH_SNAPSHOT_COLUMNS, HEAD_POSITION_COLUMNS, HORIZON_COLUMNS, LOG_COLUMNS,
    STREAM_VERSION_COLUMNS, WINDOW_COLUMNS,
};
#[cfg(test)]
use super::snapshot::SNAPSHOT_COLUMNS;

/// A column of a statement's result, as a decoder reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Column {
    /// Its name in the result.
    pub(crate) name: &'static str,
    /// Its PostgreSQL type, as sqlx names it (`PgTypeInfo::name`).
    pub(crate) ty: &'static str,
}

impl Column {
    /// The column `name` of type `ty`.
    pub(crate) const fn new(name: &'static str, ty: &'static str) -> Self {
        Self { name, ty }
    }
}

/// The PostgreSQL types of the decoders' columns, as sqlx names them: the built-in types it
/// knows in capitals, the others (`xid8`) by their name in the catalog.
pub(crate) mod pg_type {
    pub(crate) const BOOL: &str = "BOOL";
    pub(crate) const INT4: &str = "INT4";
    pub(crate) const INT8: &str = "INT8";
    pub(crate) const TEXT: &str = "TEXT";
    pub(crate) const JSON: &str = "JSON";
    pub(crate) const JSONB: &str = "JSONB";
    pub(crate) const TIMESTAMPTZ: &str = "TIMESTAMPTZ";
    pub(crate) const OID: &str = "OID";
    pub(crate) const XID8: &str = "xid8";
    pub(crate) const UUID: &str = "UUID";
}

/// The result of a statement that returns no rows.
#[cfg(test)]
const NO_COLUMNS: &[Column] = &[];

/// Whether two strings are equal, in a constant.
const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The position of the column `name` in `columns`: a decoder's index, defined by its column
/// list (evaluated in a constant, so a name missing from the list does not compile).
pub(crate) const fn index(columns: &[Column], name: &str) -> usize {
    let mut i = 0;
    while i < columns.len() {
        if same(columns[i].name, name) {
            return i;
        }
        i += 1;
    }
    panic!("no column of that name in the list");
}

/// Where the columns of `part` start in `columns`: the base a decoder of `part` reads a
/// longer row from (evaluated in a constant, so a row without `part` does not compile).
pub(crate) const fn offset(columns: &[Column], part: &[Column]) -> usize {
    let mut start = 0;
    while start + part.len() <= columns.len() {
        let mut i = 0;
        while i < part.len()
            && same(columns[start + i].name, part[i].name)
            && same(columns[start + i].ty, part[i].ty)
        {
            i += 1;
        }
        if i == part.len() {
            return start;
        }
        start += 1;
    }
    panic!("the columns of the part are not in the list");
}

/// The columns of `parts`, one after the other: a row that decoders read part by part.
/// `N` must be their total count.
pub(crate) const fn concat<const N: usize>(parts: &[&[Column]]) -> [Column; N] {
    let mut out = [Column::new("", ""); N];
    let mut n = 0;
    let mut p = 0;
    while p < parts.len() {
        let mut i = 0;
        while i < parts[p].len() {
            out[n] = parts[p][i];
            n += 1;
            i += 1;
        }
        p += 1;
    }
    assert!(n == N, "N is not the parts' total count");
    out
}

/// Declares [`Sql`]: each statement's field, its file, and the columns its decoder reads.
macro_rules! statements {
    ($($(#[doc = $doc:literal])* $name:ident = $file:literal => $columns:expr;)*) => {
        /// The statements of a store, with its schema name filled in.
        pub(super) struct Sql {
            $($(#[doc = $doc])* pub(super) $name: String,)*
        }

        impl Sql {
            /// The statements for `schema`.
            pub(super) fn new(schema: &str) -> Self {
                Self {
                    $($name: include_str!($file).replace("{schema}", schema),)*
                }
            }

            /// Every statement: its name, its text and the columns its decoder reads.
            #[cfg(test)]
            fn all(&self) -> Vec<(&'static str, &str, &'static [Column])> {
                vec![$((stringify!($name), self.$name.as_str(), $columns),)*]
            }
        }
    };
}

statements! {
    /// An append through the schema's `append` function: the idempotency key, the
    /// expected version and the insert in one transaction.
    append = "sql/append.sql" => APPEND_COLUMNS;
    /// An append expecting a version, with no key, as one plain `INSERT` of a batch.
    append_expected = "sql/append_expected.sql" => INSERTED_COLUMNS;
    /// [`append_expected`](Self::append_expected) for one event.
    append_one = "sql/append_one.sql" => ONE_INSERTED_COLUMNS;
    /// [`append_one`](Self::append_one) when the expected version was just seen.
    append_one_seen = "sql/append_one_seen.sql" => ONE_INSERTED_COLUMNS;
    /// The events of a stream, with full envelopes.
    read_stream = "sql/read_stream.sql" => EVENT_COLUMNS;
    /// A page of the global log.
    read_all = "sql/read_all.sql" => LOG_COLUMNS;
    /// A window of the global log for a filtered read, each row with whether it is matched.
    read_log_window = "sql/read_log_window.sql" => WINDOW_COLUMNS;
    /// A page of the events of some names, name by name, below a horizon.
    read_log_names = "sql/read_log_names.sql" => LOG_COLUMNS;
    /// The horizon of a filtered read's next page, and the last position below it.
    log_horizon = "sql/log_horizon.sql" => HORIZON_COLUMNS;
    /// Whether events after a position are readable now.
    events_after = "sql/events_after.sql" => EVENTS_AFTER_COLUMNS;
    /// Whether committed events lie after a position, and whether some are held back.
    events_beyond = "sql/events_beyond.sql" => EVENTS_BEYOND_COLUMNS;
    /// The position of the last readable event of the global log.
    head_position = "sql/head_position.sql" => HEAD_POSITION_COLUMNS;
    /// What a fold needs of a stream's events.
    read_for_fold = "sql/read_for_fold.sql" => FOLD_EVENT_COLUMNS;
    /// A stream's snapshot of a key, then what a fold needs of the events after it.
    read_for_fold_with_snapshot = "sql/read_for_fold_with_snapshot.sql" => FOLD_WITH_SNAPSHOT_COLUMNS;
    /// A stream's version.
    stream_version = "sql/stream_version.sql" => STREAM_VERSION_COLUMNS;
    /// What the store remembers of the append made with a key.
    find_idempotency_key = "sql/find_idempotency_key.sql" => RECORD_COLUMNS;
    /// Deletes a batch of expired idempotency keys.
    sweep_idempotency_keys = "sql/sweep_idempotency_keys.sql" => NO_COLUMNS;
    /// Saves a snapshot by the replacement rule.
    save_snapshot = "sql/save_snapshot.sql" => NO_COLUMNS;
    /// A stream's snapshot of a key.
    load_snapshot = "sql/load_snapshot.sql" => SNAPSHOT_COLUMNS;
    /// A projection's checkpoint.
    load_checkpoint = "sql/load_checkpoint.sql" => CHECKPOINT_COLUMNS;
    /// Moves a projection's checkpoint from where it is.
    move_checkpoint = "sql/move_checkpoint.sql" => NO_COLUMNS;
    /// Whether another session holds a projection's advisory lock, and the lock's key.
    projection_lock_held = "sql/projection_lock_held.sql" => LOCK_HELD_COLUMNS;
    /// Makes the holder of a projection's lock its next owner.
    take_projection = "sql/take_projection.sql" => EPOCH_COLUMNS;
    /// A projection's current owner, locked until the caller's transaction ends.
    projection_owner = "sql/projection_owner.sql" => EPOCH_COLUMNS;
}

#[cfg(test)]
mod tests {
    use sqlx::{Column as _, Executor, Statement, TypeInfo};

    use crate::PgStoreOptions;

    /// Every statement's result columns are, in order, the columns its decoder reads by
    /// position: reordering, renaming or retyping a column of a statement's result, or of
    /// a decoder's list, fails here.
    #[tokio::test]
    async fn every_statement_selects_the_columns_its_decoder_reads() {
        let url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&url)
            .await
            .expect("the test database is reachable (set DATABASE_URL)");
        let schema = format!(
            "esrs_t_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..16]
        );
        let store = PgStoreOptions::new()
            .schema(&schema)
            .build(pool.clone())
            .expect("valid options");
        store.migrate().await.expect("migrations apply");

        let mut mismatches = Vec::new();
        {
            let mut lease = store.connections().lease().await.expect("a connection");
            for (name, sql, expected) in store.sql().all() {
                let described: Result<Vec<(String, String)>, _> =
                    (&mut lease).prepare(sql).await.map(|statement| {
                        statement
                            .columns()
                            .iter()
                            .map(|c| (c.name().to_owned(), c.type_info().name().to_owned()))
                            .collect()
                    });
                let expected: Vec<(String, String)> = expected
                    .iter()
                    .map(|c| (c.name.to_owned(), c.ty.to_owned()))
                    .collect();
                match described {
                    Ok(columns) if columns == expected => {}
                    Ok(columns) => mismatches.push(format!(
                        "{name}: selects {columns:?}, its decoder reads {expected:?}"
                    )),
                    Err(error) => mismatches.push(format!("{name}: does not prepare: {error}")),
                }
            }
        }
        pool.execute(format!("DROP SCHEMA {schema} CASCADE").as_str())
            .await
            .expect("drop the test schema");
        assert!(mismatches.is_empty(), "{mismatches:#?}");
    }
}
