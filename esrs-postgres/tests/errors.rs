//! How the store classes its failures: what retrying can fix (`Unavailable`, with the
//! cause) and what it cannot (a plain store error).

mod common;

use std::error::Error as _;
use std::time::Duration;

use common::fresh_store;
use esrs_core::conformance::{event, unique_stream};
use esrs_core::{AppendRequest, Error, EventStore, ExpectedVersion};
use esrs_postgres::PgStoreOptions;

/// The chain of sources of `error`, outermost first.
fn causes(error: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut chain = vec![error.to_string()];
    let mut next = error.source();
    while let Some(e) = next {
        chain.push(e.to_string());
        next = e.source();
    }
    chain
}

/// Connecting where nothing listens fails at once, as `Unavailable`, with the refusal as
/// its cause (not after the pool's whole acquire timeout, as a bare pool timeout).
#[tokio::test]
async fn connecting_where_nothing_listens_fails_at_once_with_the_cause() {
    // A port that was free a moment ago: nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/test");
    let connecting = PgStoreOptions::new().connect(&url); // the default acquire timeout: 30 s
    let err = tokio::time::timeout(Duration::from_secs(15), connecting)
        .await
        .expect("a refused connection is reported before the acquire timeout")
        .expect_err("nothing listens");
    let chain = causes(&err);
    assert!(
        matches!(err, esrs_postgres::Error::Unavailable(_)),
        "{chain:?}"
    );
    let mut refused = false;
    let mut next = err.source();
    while let Some(e) = next {
        refused |= e
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
            || e.downcast_ref::<esrs_postgres::sqlx::Error>()
                .is_some_and(|e| {
                    matches!(e, esrs_postgres::sqlx::Error::Io(io)
                    if io.kind() == std::io::ErrorKind::ConnectionRefused)
                });
        next = e.source();
    }
    assert!(refused, "the cause is kept: {chain:?}");
    assert!(Error::from(err).is_retryable());
}

/// A database that does not exist is no transient failure: not retryable.
#[tokio::test]
async fn a_missing_database_is_not_retryable() {
    let options = common::connect_options().database("esrs_no_such_database");
    let err = PgStoreOptions::new()
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .expect_err("the database does not exist");
    let chain = causes(&err);
    assert!(
        matches!(err, esrs_postgres::Error::Database(_)),
        "{chain:?}"
    );
    let err = Error::from(err);
    assert!(matches!(err, Error::Store { .. }), "{err:?}");
    assert!(!err.is_retryable(), "{chain:?}");
}

/// A closed pool stays closed: operations on it are not retryable.
#[tokio::test]
async fn a_closed_pool_is_not_retryable() {
    let store = fresh_store().await;
    let stream = unique_stream("closed");
    store
        .append(AppendRequest::new(
            stream.clone(),
            ExpectedVersion::Exact(0),
            vec![event("Happened", 1)],
        ))
        .await
        .expect("append");
    store.pool().close().await;
    let err = store
        .append(AppendRequest::new(
            stream.clone(),
            ExpectedVersion::Exact(1),
            vec![event("Happened", 2)],
        ))
        .await
        .expect_err("the pool is closed");
    assert!(matches!(err, Error::Store { .. }), "{err:?}");
    assert!(!err.is_retryable(), "{err:?}");
    let err = store.stream_version(&stream).await.expect_err("closed");
    assert!(!err.is_retryable(), "{err:?}");
}
