//! How the store classes its failures: what retrying can fix (`Unavailable`, with the
//! cause) and what it cannot (a plain store error).

mod common;

use std::error::Error as _;
use std::time::Duration;

use common::fresh_store;
use esrs_core::conformance::{event, unique_stream};
use esrs_core::store::AppendRequest;
use esrs_core::{Error, EventStore, ExpectedVersion};
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
    assert!(matches!(err, Error::Backend { .. }), "{err:?}");
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
    assert!(matches!(err, Error::Backend { .. }), "{err:?}");
    assert!(!err.is_retryable(), "{err:?}");
    let err = store.stream_version(&stream).await.expect_err("closed");
    assert!(!err.is_retryable(), "{err:?}");
}

/// A stored row whose columns do not decode (a negative event version, metadata that is
/// not an object, a time out of range) is a decode error that names its stream and
/// version, on every read path.
#[tokio::test]
async fn malformed_rows_are_decode_errors_naming_the_event() {
    use esrs_core::store::SnapshotKey;
    use esrs_core::{DecodeError, Position, Version};
    use esrs_postgres::sqlx;
    use futures_util::TryStreamExt;

    let store = fresh_store().await;
    let insert = format!(
        "INSERT INTO {}.events (stream_id, version, name, event_version, payload, metadata, \
         recorded_at) VALUES ($1, 1, 'Happened', $2, '{{}}'::json, $3::jsonb, $4::timestamptz)",
        store.schema()
    );
    let cases = [
        ("negative", -1, None, "now", "event_version"),
        ("metadata", 1, Some("[1, 2]"), "now", "metadata"),
        ("time", 1, None, "infinity", "recorded_at"),
    ];
    for (stream, event_version, metadata, at, _) in cases {
        sqlx::query(&insert)
            .bind(stream)
            .bind(event_version)
            .bind(metadata)
            .bind(at)
            .execute(store.pool())
            .await
            .expect("insert");
    }
    let expect = |err: Error, stream: &str, column: &str, path: &str| match err {
        Error::Decode {
            stream: s,
            version,
            source: DecodeError::MalformedRow { column: c, .. },
        } => assert_eq!((s.as_str(), version, c), (stream, 1, column), "{path}"),
        other => panic!("{path}: expected a malformed row of {stream}, got {other:?}"),
    };
    let key = SnapshotKey::new(1, 7);
    for (stream, _, _, _, column) in cases {
        let id = esrs_core::StreamId::new(stream).expect("stream id");
        let err = store
            .read_stream(&id, 1, Version::MAX)
            .try_collect::<Vec<_>>()
            .await
            .expect_err("malformed");
        expect(err, stream, column, "read_stream");
    }
    let negative = esrs_core::StreamId::new("negative").expect("stream id");
    let err = store
        .read_for_fold(&negative, 1, Version::MAX, None)
        .try_collect::<Vec<_>>()
        .await
        .expect_err("malformed");
    expect(err, "negative", "event_version", "read_for_fold");
    let err = store
        .read_for_fold(&negative, 1, Version::MAX, Some(key))
        .try_collect::<Vec<_>>()
        .await
        .expect_err("malformed");
    expect(
        err,
        "negative",
        "event_version",
        "read_for_fold with a snapshot key",
    );
    let err = store
        .read_all(Position::START)
        .try_collect::<Vec<_>>()
        .await
        .expect_err("malformed");
    expect(err, "negative", "event_version", "read_all");
}

/// A request the store refuses before writing anything comes back as a backend error whose
/// source is the typed reason, with its message as before.
#[tokio::test]
async fn a_schema_version_the_table_cannot_store_is_a_typed_refusal() {
    let store = fresh_store().await;
    let stream = unique_stream("too-new");
    let mut too_new = event("E", 1);
    too_new.schema_version = u32::MAX;
    let err = store
        .append(AppendRequest::new(
            stream.clone(),
            ExpectedVersion::NoStream,
            vec![too_new],
        ))
        .await
        .expect_err("refused");
    let Error::Backend { source } = &err else {
        panic!("expected a backend error, got {err:?}");
    };
    assert!(
        matches!(
            source.downcast_ref::<esrs_postgres::Error>(),
            Some(esrs_postgres::Error::SchemaVersionTooLarge {
                name: "E",
                schema_version: u32::MAX
            })
        ),
        "{err:?}"
    );
    assert_eq!(
        source.to_string(),
        "event `E` has schema version 4294967295, over the largest storable version 2147483647"
    );
    assert_eq!(store.stream_version(&stream).await.expect("version"), 0);
}
