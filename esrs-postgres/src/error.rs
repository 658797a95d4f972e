//! Errors of setting up the store, and how database errors map to [`esrs_core::Error`].

/// A specialised `Result` whose error defaults to [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error of connecting, configuring or migrating a [`PgStore`](crate::PgStore).
///
/// The [`EventStore`](esrs_core::EventStore) operations report [`esrs_core::Error`]
/// instead; this type converts into it, so `?` works in code that uses either.
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

/// The SQLSTATE of a database error, if it is one.
pub(crate) fn sqlstate(error: &sqlx::Error) -> Option<std::borrow::Cow<'_, str>> {
    error.as_database_error().and_then(|db| db.code())
}

/// The constraint named by a unique violation, if the error is one.
pub(crate) fn unique_violation(error: &sqlx::Error) -> Option<&str> {
    match error {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => {
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
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08: connection exception; 57P01..57P03: the server is shutting down, the
            // backend was terminated, or it cannot accept connections yet; 53300: too many
            // connections. Not here, as retrying cannot help: 3D000 (the database does not
            // exist) and a closed pool (`PoolClosed`).
            code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300")
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
    // 3F000: no such schema; 42P01: no such table; 42883: no such function.
    if matches!(
        sqlstate(&error).as_deref(),
        Some("3F000" | "42P01" | "42883")
    ) {
        return esrs_core::Error::Backend {
            source: Box::new(Error::NotMigrated(error)),
        };
    }
    match sqlstate(&error).as_deref() {
        // Serialization failure and deadlock: the transaction was rolled back and can be
        // run again as is.
        Some("40001" | "40P01") => esrs_core::Error::Retryable {
            source: Box::new(error),
        },
        _ => esrs_core::Error::Backend {
            source: Box::new(error),
        },
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
