//! Errors of setting up the store, and how database errors map to [`esrs_core::Error`].

use esrs_core::ExpectedVersion;

/// A specialised `Result` whose error defaults to [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error of connecting, configuring or migrating a [`PgStore`](crate::PgStore).
///
/// The [`EventStore`](esrs_core::EventStore) operations report [`esrs_core::Error`]
/// instead; this type converts into it, so `?` works in code that uses either. The
/// failures of an operation that are the store's own (not the database's) are variants of
/// this type, the source of an [`esrs_core::Error::Backend`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The schema name is not a plain lowercase SQL identifier of at most
    /// [`MAX_SCHEMA_LEN`](crate::MAX_SCHEMA_LEN) bytes, or it is an SQL keyword (refused by
    /// [`PgStore::migrate`](crate::PgStore::migrate)).
    #[error("invalid schema name {name:?}: {reason}")]
    InvalidSchema {
        /// The refused name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The database could not be reached, or the connection was lost.
    #[error("PostgreSQL is unavailable")]
    Unavailable(#[source] sqlx::Error),

    /// A migration failed; the transaction that ran it was rolled back, so the schema is
    /// as it was before the call.
    #[error("esrs migration {version} failed")]
    Migration {
        /// The migration's version.
        version: i32,
        /// The database's error.
        #[source]
        source: sqlx::Error,
    },

    /// The store's tables or functions are missing or older than this program: run
    /// [`PgStore::migrate`](crate::PgStore::migrate).
    #[error("the esrs schema is missing or outdated; run `PgStore::migrate()`")]
    NotMigrated(#[source] sqlx::Error),

    /// Any other database error, including those that retrying cannot fix: a database
    /// that does not exist, a refused login, a closed pool, a malformed URL.
    #[error("PostgreSQL error")]
    Database(#[source] sqlx::Error),

    /// An append expected a version this store cannot check (it checks
    /// [`Any`](ExpectedVersion::Any), [`NoStream`](ExpectedVersion::NoStream) and
    /// [`Exact`](ExpectedVersion::Exact)). Nothing was written.
    #[error("unsupported expected version: {0}")]
    UnsupportedExpectedVersion(ExpectedVersion),

    /// An event's schema version is over the largest the events table stores
    /// (`i32::MAX`). Nothing was written.
    #[error(
        "event `{name}` has schema version {schema_version}, over the largest storable version {max}",
        max = i32::MAX
    )]
    SchemaVersionTooLarge {
        /// The stored name of the event.
        name: &'static str,
        /// Its schema version.
        schema_version: u32,
    },

    /// The schema holds transaction ids ahead of this cluster's next one: it was restored
    /// from another cluster by `pg_dump`/`pg_restore` (or a copy of its files), and the
    /// events appended from now on would sort before the restored ones in the global log,
    /// unseen by every projection. Refused by [`PgStore::migrate`](crate::PgStore::migrate);
    /// restore with `esrs import` ([`PgStore::import`](crate::PgStore::import)) into an
    /// empty schema instead.
    #[error(
        "schema `{schema}` holds events of transaction {stored}, ahead of this cluster's next transaction {next}: \
         it was restored from another cluster (pg_dump/pg_restore or a file copy), and new events would sort \
         before the restored ones; restore it with `esrs import` (PgStore::import) into an empty schema instead"
    )]
    RestoredFromAnotherCluster {
        /// The schema.
        schema: String,
        /// The highest transaction id stored in it.
        stored: u64,
        /// This cluster's next transaction id.
        next: u64,
    },

    /// The partitioning of the events table ([`PgStoreOptions::partitions`](crate::PgStoreOptions::partitions))
    /// is not a number of partitions the store takes (0, or over
    /// [`MAX_PARTITIONS`](crate::MAX_PARTITIONS)), or the schema was created with another one:
    /// the layout is chosen when the schema is created.
    #[error(
        "schema `{schema}`: {asked} partitions of the events table were asked for{}; \
         a store takes 1 (one plain table) to 1024, chosen when its schema is created",
        match found { Some(n) => format!(", but the schema has {n}"), None => String::new() }
    )]
    PartitionLayout {
        /// The schema.
        schema: String,
        /// The number of partitions asked for.
        asked: u16,
        /// The number the schema has (1: a plain table), when it exists.
        found: Option<u16>,
    },

    /// The database answered in a way this program does not expect (a schema changed by
    /// hand, say): what it answered.
    #[error("{0}")]
    UnexpectedAnswer(String),
}

impl Error {
    /// Sorts a database error into [`Error::Unavailable`] or [`Error::Database`].
    pub(crate) fn from_sqlx(error: sqlx::Error) -> Self {
        if is_unavailable(&error) {
            Self::Unavailable(error)
        } else {
            Self::Database(error)
        }
    }
}

impl From<Error> for esrs_core::Error {
    fn from(error: Error) -> Self {
        match error {
            Error::Unavailable(source) => Self::Unavailable {
                source: Box::new(source),
            },
            Error::Database(source) => to_core(source),
            other => Self::Backend {
                source: Box::new(other),
            },
        }
    }
}

/// The SQLSTATE codes the store acts on for which sqlx has no typed accessor (as
/// `DatabaseError::is_unique_violation` is for `23505`), by their names in PostgreSQL's
/// list of error codes.
mod sqlstate {
    /// The class of connection exceptions (`08…`).
    pub(super) const CONNECTION_EXCEPTION_CLASS: &str = "08";
    /// The server is shutting down (`admin_shutdown`).
    pub(super) const ADMIN_SHUTDOWN: &str = "57P01";
    /// The backend was terminated as the server crashed (`crash_shutdown`).
    pub(super) const CRASH_SHUTDOWN: &str = "57P02";
    /// The server cannot accept connections yet (`cannot_connect_now`).
    pub(super) const CANNOT_CONNECT_NOW: &str = "57P03";
    /// `too_many_connections`.
    pub(super) const TOO_MANY_CONNECTIONS: &str = "53300";
    /// No such schema (`invalid_schema_name`).
    pub(super) const INVALID_SCHEMA_NAME: &str = "3F000";
    /// No such table (`undefined_table`).
    pub(super) const UNDEFINED_TABLE: &str = "42P01";
    /// No such function (`undefined_function`).
    pub(super) const UNDEFINED_FUNCTION: &str = "42883";
    /// `serialization_failure`.
    pub(super) const SERIALIZATION_FAILURE: &str = "40001";
    /// `deadlock_detected`.
    pub(super) const DEADLOCK_DETECTED: &str = "40P01";

    /// The server could not be reached or the session ended: retrying may help. Not here,
    /// as retrying cannot help: `invalid_catalog_name` (the database does not exist).
    pub(super) const UNAVAILABLE: &[&str] = &[
        ADMIN_SHUTDOWN,
        CRASH_SHUTDOWN,
        CANNOT_CONNECT_NOW,
        TOO_MANY_CONNECTIONS,
    ];

    /// The store's schema, tables or functions are missing: it was not migrated.
    pub(super) const NOT_MIGRATED: &[&str] =
        &[INVALID_SCHEMA_NAME, UNDEFINED_TABLE, UNDEFINED_FUNCTION];

    /// The transaction was rolled back and can be run again as is.
    pub(super) const RETRYABLE: &[&str] = &[SERIALIZATION_FAILURE, DEADLOCK_DETECTED];
}

/// The SQLSTATE of a database error, if it is one.
fn sqlstate(error: &sqlx::Error) -> Option<std::borrow::Cow<'_, str>> {
    error.as_database_error().and_then(|db| db.code())
}

/// Whether `error` is a database error whose SQLSTATE is one of `codes`.
fn has_sqlstate(error: &sqlx::Error, codes: &[&str]) -> bool {
    sqlstate(error).is_some_and(|code| codes.contains(&&*code))
}

/// The constraint named by a unique violation, if the error is one.
pub(crate) fn unique_violation(error: &sqlx::Error) -> Option<&str> {
    match error {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            Some(db.constraint().unwrap_or(""))
        }
        _ => None,
    }
}

/// Whether the error means the server could not be reached or the connection broke.
fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::WorkerCrashed => true,
        // Not here, as retrying cannot help: a closed pool (`PoolClosed`).
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with(sqlstate::CONNECTION_EXCEPTION_CLASS)
                || sqlstate::UNAVAILABLE.contains(&&*code)
        }),
        _ => false,
    }
}

/// Maps a database error to the store error a caller can act on.
pub(crate) fn to_core(error: sqlx::Error) -> esrs_core::Error {
    if is_unavailable(&error) {
        return esrs_core::Error::Unavailable {
            source: Box::new(error),
        };
    }
    if has_sqlstate(&error, sqlstate::NOT_MIGRATED) {
        return esrs_core::Error::Backend {
            source: Box::new(Error::NotMigrated(error)),
        };
    }
    if has_sqlstate(&error, sqlstate::RETRYABLE) {
        return esrs_core::Error::Retryable {
            source: Box::new(error),
        };
    }
    esrs_core::Error::Backend {
        source: Box::new(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_failures_are_unavailable() {
        assert!(matches!(
            to_core(sqlx::Error::PoolTimedOut),
            esrs_core::Error::Unavailable { .. }
        ));
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(matches!(to_core(io), esrs_core::Error::Unavailable { .. }));
        assert!(matches!(
            to_core(sqlx::Error::RowNotFound),
            esrs_core::Error::Backend { .. }
        ));
    }

    #[test]
    fn permanent_failures_are_not_retryable() {
        assert!(matches!(
            to_core(sqlx::Error::PoolClosed),
            esrs_core::Error::Backend { .. }
        ));
        let e: esrs_core::Error = Error::from_sqlx(sqlx::Error::PoolClosed).into();
        assert!(!e.is_retryable());
    }

    /// Each layer says what failed at its own layer; the chain shows every cause once, even
    /// sqlx's, which prints its own cause.
    #[test]
    fn an_unavailable_database_shows_each_cause_once() {
        use esrs_core::error::ErrorChain;
        use std::error::Error as _;

        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let setup = Error::from_sqlx(sqlx::Error::Io(refused));
        assert_eq!(setup.to_string(), "PostgreSQL is unavailable");
        assert_eq!(
            ErrorChain::new(&setup).to_string(),
            "PostgreSQL is unavailable: error communicating with database: refused"
        );
        let e: esrs_core::Error = setup.into();
        assert_eq!(e.to_string(), "event store unavailable");
        assert!(e.source().is_some_and(|s| s.is::<sqlx::Error>()));
        assert_eq!(
            ErrorChain::new(&e).to_string(),
            "event store unavailable: error communicating with database: refused"
        );
    }

    #[test]
    fn setup_errors_convert() {
        let e: esrs_core::Error = Error::Unavailable(sqlx::Error::PoolTimedOut).into();
        assert!(e.is_retryable());
        let e: esrs_core::Error = Error::InvalidSchema {
            name: "x".into(),
            reason: "r",
        }
        .into();
        assert!(matches!(e, esrs_core::Error::Backend { .. }));
    }
}
