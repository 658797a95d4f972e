//! Filtered reads of the global log on PostgreSQL (`read_log`): the names and the shard are
//! filtered in SQL, a page of rare names walks the name index without reading the other
//! rows, and the checkpoint a reader takes from `Through` never passes an event that is
//! still invisible because its transaction is open.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use esrs_core::conformance::event;
use esrs_core::store::{AppendRequest, LogEntry, LogFilter, Shard};
use esrs_core::{EventStore, ExpectedVersion, Position, RecordedEvent, StreamId};
use esrs_postgres::sqlx;
use futures_util::TryStreamExt;

/// Appends one event of `name` to each of `streams`, one append each.
async fn append_each(
    store: &common::TestStore,
    streams: &[String],
    name: &'static str,
) -> Position {
    let mut last = Position::START;
    for stream in streams {
        let outcome = store
            .append(AppendRequest::new(
                StreamId::new(stream.as_str()).unwrap(),
                ExpectedVersion::Any,
                vec![event(name, 1)],
            ))
            .await
            .expect("append");
        last = outcome.last_position.expect("an event was written");
    }
    last
}

/// Every entry of a filtered read.
async fn entries(store: &common::TestStore, after: Position, filter: &LogFilter) -> Vec<LogEntry> {
    store
        .read_log(after, filter)
        .try_collect()
        .await
        .expect("read_log")
}

fn events(entries: &[LogEntry]) -> Vec<RecordedEvent> {
    entries
        .iter()
        .filter_map(|entry| match entry {
            LogEntry::Event(event) => Some(event.clone()),
            _ => None,
        })
        .collect()
}

/// What a filtered read owes: the events of `read_all` the filter matches, in order, the
/// entries' positions increasing, and (as the last entry) the end of the log.
async fn assert_read_as_filtered(store: &common::TestStore, filter: &LogFilter) {
    let all: Vec<RecordedEvent> = store
        .read_all(Position::START)
        .try_collect()
        .await
        .expect("read_all");
    let read = entries(store, Position::START, filter).await;
    let expected: Vec<_> = all
        .iter()
        .filter(|e| filter.matches(&e.name, &e.stream))
        .map(|e| (e.position, e.id))
        .collect();
    let got: Vec<_> = events(&read).iter().map(|e| (e.position, e.id)).collect();
    assert_eq!(got, expected, "{filter:?}");
    assert!(
        read.windows(2).all(|w| w[0].position() < w[1].position()),
        "entries in increasing positions"
    );
    assert_eq!(
        read.last().map(LogEntry::position),
        all.last().map(|e| e.position),
        "the read gets through the whole log"
    );
}

/// A log of 3,000 events in which `Rare` is one event in 30 but for a run of 600, read with
/// pages of 100 rows: the read goes by windows, name by name, and whole pages, and back, and
/// gives exactly the matched events; the same for a shard, for names in a shard, and for
/// filters matching most events or all of them.
#[tokio::test]
async fn a_filtered_read_gives_the_matched_events_and_gets_through_the_log() {
    let store = common::fresh_store_with(|o| o.page_size(100)).await;
    let mut writes = Vec::new();
    for i in 0..3_000 {
        let name = match i % 30 {
            0 => "Rare",
            1..=9 => "Other",
            _ => "Common",
        };
        writes.push((format!("s-{}", i % 37), name));
    }
    // Runs of each kind, so that the read meets dense and sparse parts of the log.
    writes[1_000..1_600].iter_mut().for_each(|w| w.1 = "Rare");
    for (stream, name) in &writes {
        append_each(&store, std::slice::from_ref(stream), name).await;
    }
    sqlx::raw_sql(&format!("ANALYZE {}.events", store.schema()))
        .execute(store.pool())
        .await
        .unwrap();
    for filter in [
        LogFilter::names(["Rare"]),
        LogFilter::names(["Rare", "Other"]),
        LogFilter::names(["Common", "Other"]),
        LogFilter::names(["Common", "Other", "Rare"]),
        LogFilter::all().in_shard(Shard::new(1, 3).unwrap()),
        LogFilter::names(["Rare"]).in_shard(Shard::new(0, 2).unwrap()),
        LogFilter::names(["Unknown"]),
        LogFilter::names(Vec::<String>::new()),
        LogFilter::all(),
    ] {
        assert_read_as_filtered(&store, &filter).await;
    }
    // A reader that restarts from where a read got through finds nothing left.
    let read = entries(&store, Position::START, &LogFilter::names(["Unknown"])).await;
    assert!(events(&read).is_empty());
    let through = read.last().expect("a Through at the end").position();
    assert!(
        entries(&store, through, &LogFilter::names(["Unknown"]))
            .await
            .is_empty()
    );
}

/// The SQL rule of a shard is `Shard::of`'s, for a few hundred stream ids.
#[tokio::test]
async fn the_shard_predicate_agrees_with_shard_of() {
    let store = common::fresh_store().await;
    let streams: Vec<String> = (0..300).map(|i| format!("account-{i}-é")).collect();
    append_each(&store, &streams, "E").await;
    for count in [2u32, 3, 7] {
        let mut union = BTreeSet::new();
        for index in 0..count {
            let shard = Shard::new(index, count).unwrap();
            let read = entries(&store, Position::START, &LogFilter::all().in_shard(shard)).await;
            let got: BTreeSet<String> = events(&read)
                .iter()
                .map(|e| e.stream.as_str().to_owned())
                .collect();
            let expected: BTreeSet<String> = streams
                .iter()
                .filter(|s| Shard::of(&StreamId::new(s.as_str()).unwrap(), count) == index)
                .cloned()
                .collect();
            assert_eq!(got, expected, "shard {shard}");
            union.extend(got);
        }
        assert_eq!(union.len(), streams.len());
    }
    // The same rule evaluated alone.
    for stream in &streams {
        let by_sql: i64 =
            sqlx::query_scalar("SELECT ('x' || substr(md5($1), 1, 8))::bit(32)::bigint % 1000003")
                .bind(stream)
                .fetch_one(store.pool())
                .await
                .unwrap();
        let id = StreamId::new(stream.as_str()).unwrap();
        assert_eq!(by_sql, i64::from(Shard::of(&id, 1_000_003)), "{stream}");
    }
}

/// An open transaction holds a matching event; committed events of other names come after
/// it. A filtered read gets through the skipped events only up to the open transaction: a
/// reader that takes its checkpoint from the read still gets the held-back event once it
/// commits.
#[tokio::test]
async fn a_filtered_read_never_gets_through_an_open_transaction() {
    let store = common::fresh_store_with(|o| o.settle_time(Duration::from_millis(50))).await;
    let schema = store.schema().to_owned();
    append_each(&store, &["before".to_owned()], "Common").await;

    let mut open = store.pool().begin().await.unwrap();
    sqlx::query(&format!(
        "INSERT INTO {schema}.events (stream_id, version, name, event_version, payload) \
         VALUES ('late', 1, 'Rare', 1, '{{}}')"
    ))
    .execute(&mut *open)
    .await
    .unwrap();
    let open_xid: String = sqlx::query_scalar("SELECT pg_current_xact_id()::text")
        .fetch_one(&mut *open)
        .await
        .unwrap();
    let open_xid: u64 = open_xid.parse().unwrap();

    // Committed after the open transaction began: skipped events, in windows and name by
    // name (many pages of the default size are not needed: the read switches after one).
    let skipped: Vec<String> = (0..50).map(|i| format!("s-{i}")).collect();
    append_each(&store, &skipped, "Common").await;

    let rare = LogFilter::names(["Rare"]);
    let read = entries(&store, Position::START, &rare).await;
    assert!(
        events(&read).is_empty(),
        "the open transaction's event is not visible"
    );
    let checkpoint = read.last().map_or(Position::START, LogEntry::position);
    assert!(
        checkpoint.transaction_id < open_xid,
        "the read got through {checkpoint}, past the open transaction {open_xid}"
    );

    open.commit().await.unwrap();
    let read = entries(&store, checkpoint, &rare).await;
    let got = events(&read);
    assert_eq!(got.len(), 1, "the held-back event comes with the next read");
    assert_eq!(got[0].stream.as_str(), "late");
    assert_eq!(got[0].position.transaction_id, open_xid);
}

/// The plan of a page of rare names: each name walks the name index in global order from
/// the cursor; no table is scanned, and no other index is read (the rows of other names are
/// not visited).
#[tokio::test]
async fn a_page_of_rare_names_walks_the_name_index() {
    let store = common::fresh_store().await;
    let schema = store.schema().to_owned();
    // 100,000 events in 100 transactions; one in 100 is `Rare`.
    for batch in 0..100 {
        sqlx::query(&format!(
            "INSERT INTO {schema}.events (stream_id, version, name, event_version, payload)
             SELECT 'bulk-' || (g % 1000), g / 1000 + 1,
                    CASE WHEN g % 100 = 0 THEN 'Rare' ELSE 'Common' || (g % 10) END, 1, '{{}}'
             FROM generate_series($1::int * 1000, $1::int * 1000 + 999) g"
        ))
        .bind(batch)
        .execute(store.pool())
        .await
        .unwrap();
    }
    sqlx::raw_sql(&format!("ANALYZE {schema}.events"))
        .execute(store.pool())
        .await
        .unwrap();
    let at =
        format!("SELECT transaction_id::text, sequence FROM {schema}.events WHERE sequence = $1");
    let position = |sequence: i64| {
        sqlx::query_as::<_, (String, i64)>(&at)
            .bind(sequence)
            .fetch_one(store.pool())
    };
    // From the middle of the log, a rare name and an unknown one; from its start, a name
    // with more events than a page (the walk stops at the page's end).
    for (cursor, names) in [
        (position(50_000).await.unwrap(), "ARRAY['Rare', 'Unknown']"),
        (position(1).await.unwrap(), "ARRAY['Common1']"),
    ] {
        let page = include_str!("../src/store/sql/read_log_names.sql")
            .replace("{schema}", &schema)
            .replace("$1", &format!("'{}'::xid8", cursor.0))
            .replace("$2", &cursor.1.to_string())
            .replace("$3", "pg_snapshot_xmin(pg_current_snapshot())")
            .replace("$4", names)
            .replace("$5", "5000")
            .replace("$6", "NULL")
            .replace("$7", "NULL");
        let plan = common::explain(&store, &page).await;
        println!("{names}:\n{plan}");
        assert!(!plan.contains("Seq Scan"), "{plan}");
        // Every index read is the name index (the global order's is not walked over the
        // rows of other names).
        let indexes: Vec<&str> = plan
            .lines()
            .filter(|line| line.contains("Index"))
            .filter_map(|line| {
                line.split_once(" using ")
                    .or_else(|| line.split_once(" on "))
                    .map(|(_, rest)| rest)
            })
            .collect();
        assert!(!indexes.is_empty(), "{plan}");
        assert!(
            indexes.iter().all(|index| index.contains("name")),
            "only the name index is read: {plan}"
        );
        assert!(plan.contains("n.name"), "each name by itself: {plan}");
        assert!(
            plan.contains("Index Scan using") && !plan.contains("Bitmap"),
            "an ordered walk that stops at the page's end: {plan}"
        );
    }
}
