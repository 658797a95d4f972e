//! A store whose schema is dropped and migrated again under it, at once: the versions it
//! saw in the old events table vouch for nothing in the new one, whatever the timing.

mod common;

use common::fresh_store;
use esrs_core::conformance::{event, unique_stream};
use esrs_core::store::AppendRequest;
use esrs_core::{Error, EventStore, ExpectedVersion, Version};
use esrs_postgres::sqlx;
use futures_util::TryStreamExt;

#[tokio::test]
async fn a_recreated_schema_gets_no_gap_from_versions_seen_before() {
    let store = fresh_store().await;
    let (one, batch) = (unique_stream("one"), unique_stream("batch"));
    for stream in [&one, &batch] {
        for n in 0..3 {
            store
                .append(AppendRequest::new(
                    stream.clone(),
                    ExpectedVersion::Exact(n),
                    vec![event("E", n)],
                ))
                .await
                .expect("append");
        }
        // The store has read and written version 3.
        let events: Vec<_> = store
            .read_stream(stream, 1, Version::MAX)
            .try_collect()
            .await
            .expect("read");
        assert_eq!(events.len(), 3);
    }

    sqlx::query(&format!("DROP SCHEMA {} CASCADE", store.schema()))
        .execute(store.pool())
        .await
        .expect("drop the schema");
    store.migrate().await.expect("migrate again");

    let err = store
        .append(AppendRequest::new(
            one.clone(),
            ExpectedVersion::Exact(3),
            vec![event("Gap", 4)],
        ))
        .await
        .expect_err("the new stream is empty: version 3 is not there");
    assert!(
        matches!(err, Error::Conflict(ref c) if c.actual == 0),
        "{err:?}"
    );
    let err = store
        .append(AppendRequest::new(
            batch.clone(),
            ExpectedVersion::Exact(3),
            vec![event("Gap", 4), event("Gap", 5)],
        ))
        .await
        .expect_err("the new stream is empty: version 3 is not there");
    assert!(
        matches!(err, Error::Conflict(ref c) if c.actual == 0),
        "{err:?}"
    );
    for stream in [&one, &batch] {
        let events: Vec<_> = store
            .read_stream(stream, 1, Version::MAX)
            .try_collect()
            .await
            .expect("read");
        assert!(events.is_empty(), "a gap was written: {events:?}");
    }

    // The store goes on, and skips the lookup again in the new table.
    for n in 0..3 {
        store
            .append(AppendRequest::new(
                one.clone(),
                ExpectedVersion::Exact(n),
                vec![event("E", n)],
            ))
            .await
            .expect("append in the new table");
    }
    assert_eq!(store.stream_version(&one).await.expect("version"), 3);
}
