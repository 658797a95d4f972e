//! The partitioned layout: an events table of hash partitions by stream, read as one ordered
//! log through a merge of the partitions' indexes; a schema keeps the layout it was created
//! with; a partition refuses changes as the table does. (The conformance suite and the
//! guarantee tests run on this layout too: the test script runs them with
//! `ESRS_TEST_PARTITIONS=8`.)

mod common;

use esrs_core::conformance::event;
use esrs_core::store::AppendRequest;
use esrs_core::{EventStore, ExpectedVersion, Position, StreamId};
use esrs_postgres::sqlx;
use esrs_postgres::{Error, PgStoreOptions};
use futures_util::TryStreamExt;

async fn partitioned(partitions: u16) -> common::TestStore {
    common::fresh_store_with(|o| o.partitions(partitions)).await
}

#[tokio::test]
async fn streams_spread_over_the_partitions_and_the_log_is_read_through_their_indexes() {
    let store = partitioned(8).await;
    let schema = store.schema().to_owned();
    for s in 0..200 {
        let events = (0..5).map(|n| event("E", n)).collect();
        store
            .append(AppendRequest::new(
                StreamId::new(format!("s-{s}")).unwrap(),
                ExpectedVersion::NoStream,
                events,
            ))
            .await
            .expect("append");
    }
    let per_partition: Vec<i64> = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {schema}.events GROUP BY tableoid ORDER BY 1"
    ))
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(per_partition.len(), 8, "every partition holds streams");
    assert_eq!(per_partition.iter().sum::<i64>(), 1_000);
    // Whole streams per partition.
    let split: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM (SELECT stream_id FROM {schema}.events
                              GROUP BY stream_id HAVING count(DISTINCT tableoid) > 1) t"
    ))
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(split, 0);

    let log: Vec<_> = store
        .read_all(Position::START)
        .try_collect()
        .await
        .expect("read_all");
    assert_eq!(log.len(), 1_000);
    assert!(log.windows(2).all(|w| w[0].position < w[1].position));

    // A page of the global log (a page of the default 5,000 rows, from the middle of a log of
    // 101,000 events) merges the partitions' indexes; no partition is scanned or sorted.
    sqlx::raw_sql(&format!(
        "INSERT INTO {schema}.events (stream_id, version, name, event_version, payload)
         SELECT 'bulk-' || (g % 1000), g / 1000 + 1, 'E', 1, '{{}}'
         FROM generate_series(0, 99999) g;
         ANALYZE {schema}.events"
    ))
    .execute(store.pool())
    .await
    .unwrap();
    let middle = &log[500].position;
    let page = include_str!("../src/store/sql/read_all.sql")
        .replace("{schema}", &schema)
        .replace("$1", &format!("'{}'::xid8", middle.transaction_id))
        .replace("$2", &middle.sequence.to_string())
        .replace("$3", "5000");
    let plan = common::explain(&store, &page).await;
    println!("{plan}");
    assert!(plan.contains("Merge Append"), "{plan}");
    assert!(
        !plan.contains("Seq Scan") && !plan.contains("Sort  "),
        "{plan}"
    );
}

#[tokio::test]
async fn a_schema_keeps_its_layout_and_a_partition_refuses_changes() {
    let store = partitioned(4).await;
    let schema = store.schema().to_owned();
    store
        .append(AppendRequest::new(
            StreamId::new("kept").unwrap(),
            ExpectedVersion::NoStream,
            vec![event("E", 1)],
        ))
        .await
        .expect("append");

    for asked in [1, 8] {
        let other = PgStoreOptions::new()
            .schema(&schema)
            .partitions(asked)
            .build(common::pool(2).await)
            .expect("store");
        let refused = other.migrate().await.unwrap_err();
        assert!(
            matches!(
                refused,
                Error::PartitionLayout { asked: a, found: Some(4), .. } if a == asked
            ),
            "{refused:?}"
        );
        assert!(
            refused.to_string().contains("the schema has 4"),
            "{refused}"
        );
    }
    for asked in [0, 1025] {
        let refused = PgStoreOptions::new()
            .schema(&schema)
            .partitions(asked)
            .build(common::pool(1).await)
            .unwrap_err();
        assert!(
            matches!(refused, Error::PartitionLayout { found: None, .. }),
            "{refused:?}"
        );
    }

    // The append-only rule holds on the partitions themselves.
    for statement in [
        "DELETE FROM {schema}.events_p0",
        "DELETE FROM {schema}.events_p1",
        "DELETE FROM {schema}.events_p2",
        "DELETE FROM {schema}.events_p3",
        "UPDATE {schema}.events_p2 SET name = 'x'",
        "TRUNCATE {schema}.events_p3",
        "DELETE FROM {schema}.events",
    ] {
        let sql = statement.replace("{schema}", &schema);
        let error = sqlx::query(&sql).execute(store.pool()).await.unwrap_err();
        assert!(error.to_string().contains("append-only"), "{sql}: {error}");
    }
    let count: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {schema}.events"))
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(count, 1);
}
