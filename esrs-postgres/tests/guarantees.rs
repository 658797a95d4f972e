//! PostgreSQL-specific guarantees: late commits, append-only history, decode errors, round
//! trips, lost connections, migrations, checkpoints and paging.

mod common;

use std::time::Duration;

use common::proxy::Proxy;
use common::{TestStore, fresh_store, fresh_store_with};
use esrs_core::conformance::{event, payload, unique_stream};
use esrs_core::error::EncodeError;
use esrs_core::store::{AppendRequest, FoldItem, NewEvent, Payload, Snapshot, SnapshotKey};
use esrs_core::{
    DecodeError, Error, EventSet, EventStore, ExpectedVersion, Position, RecordedEvent, Repository,
    StreamId, Version,
};
use esrs_postgres::sqlx::postgres::PgPoolOptions;
use esrs_postgres::sqlx::{self, Connection};
use esrs_postgres::{PgStore, PgStoreOptions};
use futures_util::TryStreamExt;

async fn read_all(store: &PgStore, after: Position) -> Vec<RecordedEvent> {
    store.read_all(after).try_collect().await.expect("read_all")
}

async fn read_stream(store: &PgStore, stream: &StreamId) -> Vec<RecordedEvent> {
    store
        .read_stream(stream, 1, Version::MAX)
        .try_collect()
        .await
        .expect("read_stream")
}

/// Writer A takes a sequence number and holds its transaction open while writer B commits
/// a later one: the global log must not deliver B before A, and delivers both, once each,
/// when A commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_commit_is_never_skipped() {
    let store = fresh_store_with(|o| o.settle_time(Duration::from_millis(50))).await;
    let (a, b) = (unique_stream("late-a"), unique_stream("late-b"));

    let mut tx = store.pool().begin().await.expect("begin");
    let held = store
        .append_in(
            &mut tx,
            AppendRequest::new(a.clone(), ExpectedVersion::NoStream, vec![event("A", 1)]),
        )
        .await
        .expect("A appends in its transaction");
    let committed = store
        .append(AppendRequest::new(
            b.clone(),
            ExpectedVersion::NoStream,
            vec![event("B", 2)],
        ))
        .await
        .expect("B commits");
    let (held_at, committed_at) = (
        held.first_position.expect("A has a position"),
        committed.first_position.expect("B has a position"),
    );
    assert!(
        held_at.sequence < committed_at.sequence,
        "A took the earlier sequence number"
    );

    // While A is open, B is committed and visible to plain SQL, but the log holds it back.
    let seen = read_all(&store, Position::START).await;
    assert!(
        seen.is_empty(),
        "delivered {seen:?} while an older transaction is open"
    );
    store
        .wait_for_events(Position::START, Duration::from_millis(50))
        .await
        .expect("wait");

    tx.commit().await.expect("A commits");

    // The reader resumes from its last position (the start, as it got nothing) and gets both,
    // in commit-safe order, once each.
    let mut delivered = Vec::new();
    let mut last = Position::START;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    while delivered.len() < 2 && tokio::time::Instant::now() < deadline {
        for e in read_all(&store, last).await {
            last = e.position;
            delivered.push(e);
        }
        if delivered.len() < 2 {
            store
                .wait_for_events(last, Duration::from_millis(200))
                .await
                .expect("wait");
        }
    }
    let got: Vec<_> = delivered
        .iter()
        .map(|e| (e.stream.clone(), e.position))
        .collect();
    assert_eq!(got, [(a.clone(), held_at), (b.clone(), committed_at)]);
    assert!(read_all(&store, last).await.is_empty(), "nothing twice");
    let after_a = read_all(&store, held_at).await;
    assert_eq!(after_a.len(), 1);
    assert_eq!(after_a[0].stream, b);
}

/// A read of the global log that waits for an older transaction returns the events it held
/// back as soon as that transaction ends, whenever it ends: also between one of the read's
/// page queries and its next check of what is held back (the read must then read on, not
/// conclude that it has caught up). 60 rounds, each committing at a different moment of the
/// read's waiting.
#[tokio::test]
async fn a_waiting_read_gets_the_events_held_back_when_the_older_transaction_ends() {
    let store = fresh_store_with(|o| o.settle_time(Duration::from_secs(5))).await;
    let mut last = Position::START;
    for round in 0..60u64 {
        let mut tx = store.pool().begin().await.expect("begin");
        let held = store
            .append_in(
                &mut tx,
                AppendRequest::new(
                    unique_stream("held"),
                    ExpectedVersion::NoStream,
                    vec![event("A", round)],
                ),
            )
            .await
            .expect("A appends in its transaction");
        store
            .append(AppendRequest::new(
                unique_stream("after"),
                ExpectedVersion::NoStream,
                vec![event("B", round)],
            ))
            .await
            .expect("B commits");
        let reader = {
            let store = store.clone();
            tokio::spawn(async move { read_all(&store, last).await })
        };
        // From at once to a few of the read's waiting pauses later.
        tokio::time::sleep(Duration::from_micros(round * 97 % 4_000)).await;
        tx.commit().await.expect("A commits");
        let read = reader.await.expect("the read");
        let names: Vec<&str> = read.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            ["A", "B"],
            "round {round}: the read ended without the events held back ({:?})",
            held.first_position
        );
        last = read[1].position;
    }
}

/// The database itself refuses UPDATE, DELETE and TRUNCATE of events.
#[tokio::test]
async fn history_is_append_only() {
    let store = fresh_store().await;
    let stream = unique_stream("immutable");
    store
        .append(AppendRequest::new(
            stream.clone(),
            ExpectedVersion::NoStream,
            vec![event("A", 1), event("B", 2)],
        ))
        .await
        .expect("append");
    let schema = store.schema();
    for statement in [
        format!("UPDATE {schema}.events SET name = 'Rewritten'"),
        format!("UPDATE {schema}.events SET payload = '{{}}' WHERE version = 1"),
        format!("DELETE FROM {schema}.events"),
        format!("DELETE FROM {schema}.events WHERE false"),
        format!("TRUNCATE {schema}.events"),
    ] {
        let err = sqlx::query(&statement)
            .execute(store.pool())
            .await
            .expect_err("refused");
        let db = err.as_database_error().expect("a database error");
        assert_eq!(db.code().as_deref(), Some("23001"), "{statement}: {db}");
        assert!(db.message().contains("append-only"), "{}", db.message());
    }
    let events = read_stream(&store, &stream).await;
    assert_eq!(
        events.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
        ["A", "B"]
    );
}

/// Recorded times come back to the microsecond, before and after PostgreSQL's epoch
/// (2000-01-01) and in the global log as in a stream.
#[tokio::test]
async fn recorded_times_are_exact() {
    let store = fresh_store().await;
    let stream = unique_stream("times");
    let times = [
        "1969-07-20 20:17:40.000001+00",
        "1999-12-31 23:59:59.999999+00",
        "2000-01-01 00:00:00+00",
        "2026-11-30 16:45:12.345678+00",
    ];
    for (version, time) in (1i64..).zip(times) {
        sqlx::query(&format!(
            "INSERT INTO {}.events (stream_id, version, name, event_version, payload, recorded_at) \
             VALUES ($1, $2, 'T', 1, '{{}}', $3::timestamptz)",
            store.schema()
        ))
        .bind(stream.as_str())
        .bind(version)
        .bind(time)
        .execute(store.pool())
        .await
        .expect("insert");
    }
    let expected: Vec<_> = times
        .iter()
        .map(|t| {
            chrono::DateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f%#z")
                .expect("a time")
                .to_utc()
        })
        .collect();
    let read: Vec<_> = read_stream(&store, &stream)
        .await
        .iter()
        .map(|e| e.recorded_at)
        .collect();
    assert_eq!(read, expected);
    let logged: Vec<_> = read_all(&store, Position::START)
        .await
        .iter()
        .map(|e| e.recorded_at)
        .collect();
    assert_eq!(logged, expected);
}

/// The payload limit is the store's option, checked before anything is sent.
#[tokio::test]
async fn payload_limit_is_configurable() {
    let store = fresh_store_with(|o| o.max_payload_bytes(64)).await;
    let stream = unique_stream("small");
    let fits = payload(serde_json::json!({ "b": "x".repeat(56) }));
    assert_eq!(fits.get().len(), 64);
    store
        .append(AppendRequest::new(
            stream.clone(),
            ExpectedVersion::Any,
            vec![NewEvent::new("Fits", 1, fits)],
        ))
        .await
        .expect("at the limit");
    let err = store
        .append(AppendRequest::new(
            stream.clone(),
            ExpectedVersion::Any,
            vec![
                event("Small", 1),
                NewEvent::new(
                    "Big",
                    1,
                    payload(serde_json::json!({ "b": "x".repeat(57) })),
                ),
            ],
        ))
        .await
        .expect_err("over the limit");
    assert!(
        matches!(
            err,
            Error::PayloadTooLarge {
                name: "Big",
                size: 65,
                limit: 64,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(store.stream_version(&stream).await.expect("version"), 1);
}

// A tiny aggregate, written by hand.

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Deposited {
    amount: u64,
}

#[derive(Debug, Clone, PartialEq)]
enum AccountEvent {
    Deposited(Deposited),
}

impl EventSet for AccountEvent {
    const NAMES: &'static [&'static str] = &["Deposited"];
    fn name(&self) -> &'static str {
        "Deposited"
    }
    fn schema_version(&self) -> u32 {
        1
    }
    fn encode(&self) -> Result<Payload, EncodeError> {
        let AccountEvent::Deposited(e) = self;
        esrs_core::store::encode_json("Deposited", e)
    }
    fn decode(name: &str, version: u32, payload: &str) -> Result<Self, DecodeError> {
        match (name, version) {
            ("Deposited", 1) => Ok(AccountEvent::Deposited(DecodeError::parse(
                "Deposited",
                1,
                payload,
            )?)),
            ("Deposited", v) => Err(DecodeError::UnknownVersion {
                name: "Deposited",
                version: v,
                known: vec![1],
            }),
            _ => Err(DecodeError::UnknownName {
                name: name.to_owned(),
                known: Self::NAMES.to_vec(),
            }),
        }
    }
}

#[derive(Debug, Default)]
struct Account {
    balance: u64,
}

impl esrs_core::Aggregate for Account {
    const NAME: &'static str = "account";
    type Event = AccountEvent;
    fn apply(&mut self, event: &AccountEvent) {
        let AccountEvent::Deposited(e) = event;
        self.balance += e.amount;
    }
}

/// A stored row with an unknown name or a future version is a typed decode error, and the
/// rest of the store stays readable.
#[tokio::test]
async fn undecodable_rows_are_typed_errors() {
    let store = fresh_store().await;
    let accounts = Repository::<Account, _>::new(store.store.clone());
    let ok = StreamId::new("ok").unwrap();
    accounts
        .execute(&ok, |_| {
            Ok::<_, std::convert::Infallible>(AccountEvent::Deposited(Deposited { amount: 5 }))
        })
        .await
        .expect("execute");

    let insert = format!(
        "INSERT INTO {}.events (stream_id, version, name, event_version, payload) \
         VALUES ($1, 1, $2, $3, $4::json)",
        store.schema()
    );
    for (stream, name, version) in [
        ("account-unknown", "Withdrawn", 1),
        ("account-future", "Deposited", 9),
    ] {
        sqlx::query(&insert)
            .bind(stream)
            .bind(name)
            .bind(version)
            .bind(r#"{"amount":1}"#)
            .execute(store.pool())
            .await
            .expect("insert");
    }

    let err = accounts
        .load(&StreamId::new("unknown").unwrap())
        .await
        .expect_err("unknown name");
    match err {
        Error::Decode {
            stream,
            version,
            source: DecodeError::UnknownName { name, .. },
        } => assert_eq!(
            (stream.as_str(), version, name.as_str()),
            ("account-unknown", 1, "Withdrawn")
        ),
        other => panic!("expected an unknown name, got {other:?}"),
    }
    let err = accounts
        .load(&StreamId::new("future").unwrap())
        .await
        .expect_err("future version");
    assert!(
        matches!(
            err,
            Error::Decode {
                source: DecodeError::UnknownVersion { version: 9, .. },
                ..
            }
        ),
        "{err:?}"
    );

    let loaded = accounts.load(&ok).await.expect("other streams load");
    assert_eq!((loaded.balance, loaded.version), (5, 1));
    assert_eq!(read_all(&store, Position::START).await.len(), 3);
}

/// A store on `schema` whose single connection goes through `proxy`. Notifications are off:
/// with them on, appends also share a separate `pg_notify` statement, sent after commit.
async fn store_through(proxy: &Proxy, schema: &str) -> PgStore {
    let pool = proxy.pool(1).await;
    PgStoreOptions::new()
        .schema(schema)
        .notifications(false)
        .build(pool)
        .expect("store")
}

/// The client's messages grouped into round trips: each group ends with a Sync.
fn round_trips_with_statements(messages: &str) -> usize {
    messages
        .split_inclusive('S')
        .filter(|batch| batch.contains('E') || batch.contains('Q'))
        .count()
}

/// An append of 1 event and of 1,000 events is one statement in one round trip.
#[tokio::test]
async fn append_is_one_round_trip() {
    let store = fresh_store().await;
    let proxy = Proxy::to_test_server().await;
    let through = store_through(&proxy, store.schema()).await;
    let stream = unique_stream("trips");
    // The first use of a connection prepares the statements (an append expecting a version,
    // of one event and of a batch, and one expecting any); later appends reuse them.
    through
        .append(AppendRequest::new(
            stream.clone(),
            ExpectedVersion::Any,
            vec![event("Warm", 0)],
        ))
        .await
        .expect("warm-up");
    through
        .append(AppendRequest::new(
            stream.clone(),
            ExpectedVersion::Exact(1),
            vec![event("Warm", 1)],
        ))
        .await
        .expect("warm-up of an append expecting a version");
    through
        .append(AppendRequest::new(
            stream.clone(),
            ExpectedVersion::Exact(2),
            vec![event("Warm", 2), event("Warm", 3)],
        ))
        .await
        .expect("warm-up of a batch expecting a version");
    // The store now knows its events table (from the one-event append), so this one skips
    // the lookup of the version it has just written.
    through
        .append(AppendRequest::new(
            stream.clone(),
            ExpectedVersion::Exact(4),
            vec![event("Warm", 4)],
        ))
        .await
        .expect("warm-up of an append expecting a version the store has seen");
    tokio::time::sleep(Duration::from_millis(50)).await;

    for size in [1u64, 1000] {
        proxy.reset();
        let version = through.stream_version(&stream).await.expect("version");
        tokio::time::sleep(Duration::from_millis(50)).await;
        proxy.reset();
        let outcome = through
            .append(AppendRequest::new(
                stream.clone(),
                ExpectedVersion::Exact(version),
                (0..size).map(|n| event("E", n)).collect(),
            ))
            .await
            .expect("append");
        assert_eq!(outcome.len(), size);
        // Let the pool's release check (a bare Sync, no statement) finish.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let messages = proxy.messages();
        assert_eq!(
            messages.matches('E').count(),
            1,
            "one statement for {size}: {messages}"
        );
        assert_eq!(
            messages.matches('P').count(),
            0,
            "no re-prepare for {size}: {messages}"
        );
        assert_eq!(
            messages.matches('Q').count(),
            0,
            "no simple query for {size}: {messages}"
        );
        assert_eq!(
            round_trips_with_statements(&messages),
            1,
            "one round trip for {size}: {messages}"
        );
    }

    // On a connection of the caller's, nothing but the statement goes over the wire.
    let mut conn = sqlx::PgConnection::connect_with(&proxy.connect_options())
        .await
        .expect("connect");
    let version = store.stream_version(&stream).await.expect("version");
    store
        .append_in(
            &mut conn,
            AppendRequest::new(
                stream.clone(),
                ExpectedVersion::Exact(version),
                vec![event("A", 1)],
            ),
        )
        .await
        .expect("prepare on this connection");
    proxy.reset();
    store
        .append_in(
            &mut conn,
            AppendRequest::new(
                stream.clone(),
                ExpectedVersion::Exact(version + 1),
                (0..1000).map(|n| event("B", n)).collect(),
            ),
        )
        .await
        .expect("append");
    // Bind, Execute, Close of the portal, Sync: one statement, one round trip.
    let messages = proxy.messages();
    assert_eq!(messages.matches('E').count(), 1, "{messages}");
    assert_eq!(messages.matches('S').count(), 1, "{messages}");
    assert!(
        !messages.contains('P') && !messages.contains('Q'),
        "{messages}"
    );
    conn.close().await.expect("close");
}

/// A lost connection is `Unavailable`; everything acknowledged before is still there.
#[tokio::test]
async fn lost_connections_are_unavailable_and_lose_nothing() {
    let store = fresh_store().await;
    let stream = unique_stream("lost");

    // The network to the server breaks.
    let proxy = Proxy::to_test_server().await;
    let through = store_through(&proxy, store.schema()).await;
    for n in 1..=3 {
        through
            .append(AppendRequest::new(
                stream.clone(),
                ExpectedVersion::Exact(n - 1),
                vec![event("Acked", n)],
            ))
            .await
            .expect("acknowledged");
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    proxy.cut();
    let err = through
        .append(AppendRequest::new(
            stream.clone(),
            ExpectedVersion::Exact(3),
            vec![event("Lost", 4)],
        ))
        .await
        .expect_err("the connection is gone");
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(err.is_retryable());

    // The server terminates the backend of the connection the store appends on.
    let mut conn = sqlx::PgConnection::connect_with(&common::connect_options())
        .await
        .expect("connect");
    let version = store.stream_version(&stream).await.expect("version");
    store
        .append_in(
            &mut conn,
            AppendRequest::new(
                stream.clone(),
                ExpectedVersion::Exact(version),
                vec![event("Acked", 4)],
            ),
        )
        .await
        .expect("acknowledged");
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .expect("pid");
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1, 5000)")
        .bind(pid)
        .fetch_one(store.pool())
        .await
        .expect("terminate");
    assert!(killed);
    let err = store
        .append_in(
            &mut conn,
            AppendRequest::new(
                stream.clone(),
                ExpectedVersion::Exact(version + 1),
                vec![event("Lost", 5)],
            ),
        )
        .await
        .expect_err("the backend is gone");
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");

    // Nobody listens on the address at all.
    let err = PgStoreOptions::new()
        .acquire_timeout(Duration::from_millis(500))
        .connect("postgres://postgres@127.0.0.1:1/test")
        .await
        .expect_err("nothing listens on port 1");
    assert!(
        matches!(err, esrs_postgres::Error::Unavailable(_)),
        "{err:?}"
    );
    let closed = PgStore::from_pool(
        PgPoolOptions::new()
            .acquire_timeout(Duration::from_millis(500))
            .connect_lazy("postgres://postgres@127.0.0.1:1/test")
            .expect("lazy pool"),
    );
    let err = closed
        .append(AppendRequest::new(
            stream.clone(),
            ExpectedVersion::Any,
            vec![event("Lost", 6)],
        ))
        .await
        .expect_err("unreachable");
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");

    let events = read_stream(&store, &stream).await;
    assert_eq!(
        events.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
        ["Acked"; 4],
        "every acknowledged event, and nothing else"
    );
}

/// Migrations apply once, also when several processes run them at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_idempotent_and_concurrent_safe() {
    let schema = common::unique_schema();
    let stores: Vec<PgStore> = futures_util::future::join_all((0..4).map(|_| async {
        PgStoreOptions::new()
            .schema(&schema)
            .build(common::pool(2).await)
            .expect("store")
    }))
    .await;
    let _cleanup = TestStore {
        store: stores[0].clone(),
    };
    assert_eq!(stores[0].schema_version().await.expect("version"), 0);
    let results = futures_util::future::join_all(stores.iter().map(|s| s.migrate())).await;
    for r in results {
        r.expect("every concurrent migrate succeeds");
    }
    stores[1].migrate().await.expect("again");
    assert_eq!(
        stores[2].schema_version().await.expect("version"),
        PgStore::SCHEMA_VERSION
    );
    let applied: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {schema}.migrations"))
        .fetch_one(stores[0].pool())
        .await
        .expect("count");
    assert_eq!(applied, i64::from(PgStore::SCHEMA_VERSION));
    stores[3]
        .append(AppendRequest::new(
            unique_stream("m"),
            ExpectedVersion::NoStream,
            vec![event("A", 1)],
        ))
        .await
        .expect("usable");
}

/// Using a store before migrating it says what to do.
#[tokio::test]
async fn an_unmigrated_store_says_to_migrate() {
    let store = PgStoreOptions::new()
        .schema(common::unique_schema())
        .build(common::pool(1).await)
        .expect("store");
    let err = store
        .append(AppendRequest::new(
            unique_stream("early"),
            ExpectedVersion::Any,
            vec![event("A", 1)],
        ))
        .await
        .expect_err("no tables yet");
    let Error::Backend { source } = &err else {
        panic!("expected a store error, got {err:?}");
    };
    assert!(
        matches!(
            source.downcast_ref::<esrs_postgres::Error>(),
            Some(esrs_postgres::Error::NotMigrated(_))
        ),
        "{err:?}"
    );
    let shown = esrs_core::error::ErrorChain::new(&err).to_string();
    assert!(shown.contains("migrate"), "{shown}");
}

#[tokio::test]
async fn schema_names_are_validated() {
    let pool = PgPoolOptions::new()
        .connect_lazy(&common::database_url())
        .expect("lazy pool");
    for bad in ["Events", "x; DROP TABLE y", "", "1abc"] {
        let err = PgStoreOptions::new()
            .schema(bad)
            .build(pool.clone())
            .expect_err("refused");
        assert!(
            matches!(err, esrs_postgres::Error::InvalidSchema { .. }),
            "{err:?}"
        );
    }
    // A keyword passes the character check; migrate refuses it before writing anything.
    let store = PgStoreOptions::new()
        .schema("user")
        .build(pool)
        .expect("the characters are fine");
    let err = store.migrate().await.expect_err("a keyword is refused");
    assert!(
        matches!(&err, esrs_postgres::Error::InvalidSchema { name, .. } if name == "user"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "invalid schema name \"user\": it is an SQL keyword; choose another name"
    );
}

/// Checkpoints: absent, moved only from where they are (no public method sets or deletes
/// one wherever it is).
#[tokio::test]
async fn checkpoints() {
    let store = fresh_store().await;
    assert_eq!(store.load_checkpoint("p").await.expect("load"), None);
    let (one, two, three) = (
        Position::new(10, 1),
        Position::new(10, 2),
        Position::new(12, 9),
    );
    let mut tx = store.pool().begin().await.expect("begin");
    assert!(
        store
            .move_checkpoint_in(&mut tx, "p", Position::START, one)
            .await
            .expect("first move")
    );
    tx.commit().await.expect("commit");
    assert_eq!(store.load_checkpoint("p").await.expect("load"), Some(one));

    let mut tx = store.pool().begin().await.expect("begin");
    assert!(
        !store
            .move_checkpoint_in(&mut tx, "p", two, three)
            .await
            .expect("move")
    );
    assert!(
        store
            .move_checkpoint_in(&mut tx, "p", one, two)
            .await
            .expect("move")
    );
    assert_eq!(
        store.load_checkpoint_in(&mut tx, "p").await.expect("load"),
        Some(two)
    );
    assert_eq!(
        store.load_checkpoint("p").await.expect("load"),
        Some(one),
        "not committed yet"
    );
    tx.commit().await.expect("commit");
    assert_eq!(store.load_checkpoint("p").await.expect("load"), Some(two));

    let mut tx = store.pool().begin().await.expect("begin");
    assert!(
        store
            .move_checkpoint_in(&mut tx, "q", Position::START, one)
            .await
            .expect("first move")
    );
    tx.rollback().await.expect("rollback");
    assert_eq!(store.load_checkpoint("q").await.expect("load"), None);
}

/// Reads of the global log page through long results without losing or repeating events;
/// stream reads (one query each) return every event, also after a snapshot, whatever the
/// page size.
#[tokio::test]
async fn reads_page_through_long_results() {
    let store = fresh_store_with(|o| o.page_size(7)).await;
    let stream = unique_stream("pages");
    for batch in 0..3u64 {
        store
            .append(AppendRequest::new(
                stream.clone(),
                ExpectedVersion::Exact(batch * 10),
                (1..=10).map(|n| event("E", batch * 10 + n)).collect(),
            ))
            .await
            .expect("append");
    }
    let versions: Vec<_> = read_stream(&store, &stream)
        .await
        .iter()
        .map(|e| e.version)
        .collect();
    assert_eq!(versions, (1..=30).collect::<Vec<_>>());
    let log = read_all(&store, Position::START).await;
    assert_eq!(log.len(), 30);
    assert!(log.windows(2).all(|w| w[0].position < w[1].position));

    let key = SnapshotKey::new(3, 42);
    store
        .save_snapshot(Snapshot::new(
            stream.clone(),
            10,
            key,
            payload(serde_json::json!({ "s": 10 })),
        ))
        .await
        .expect("save");
    let items: Vec<FoldItem> = store
        .read_for_fold(&stream, 1, Version::MAX, Some(key))
        .try_collect()
        .await
        .expect("read");
    match &items[0] {
        FoldItem::Snapshot(s) => assert_eq!((s.version, s.payload.get()), (10, r#"{"s":10}"#)),
        other => panic!("expected the snapshot first, got {other:?}"),
    }
    let tail: Vec<_> = items[1..]
        .iter()
        .map(|i| match i {
            FoldItem::Event(e) => e.version,
            other => panic!("expected events after the snapshot, got {other:?}"),
        })
        .collect();
    assert_eq!(tail, (11..=30).collect::<Vec<_>>());
}

/// With `ExpectedVersion::Any`, racing writers never see a conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn any_version_never_conflicts() {
    let store = std::sync::Arc::new(fresh_store().await);
    let stream = unique_stream("any");
    let tasks: Vec<_> = (0..16u64)
        .map(|task| {
            let (store, stream) = (store.clone(), stream.clone());
            tokio::spawn(async move {
                for i in 0..10 {
                    store
                        .append(AppendRequest::new(
                            stream.clone(),
                            ExpectedVersion::Any,
                            vec![event("Any", task * 100 + i)],
                        ))
                        .await
                        .expect("Any never conflicts");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    let versions: Vec<_> = read_stream(&store, &stream)
        .await
        .iter()
        .map(|e| e.version)
        .collect();
    assert_eq!(versions, (1..=160).collect::<Vec<_>>());
}

/// A reader at the head, in another process (another store with its own connections),
/// wakes on the append's notification long before its poll; with notifications off it
/// still wakes, by polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_readers_wake_on_notification_or_poll() {
    for notify in [true, false] {
        let writer = fresh_store_with(|o| o.notifications(notify)).await;
        let reader = PgStoreOptions::new()
            .schema(writer.schema())
            .notifications(notify)
            .poll_interval(if notify {
                Duration::from_secs(60)
            } else {
                Duration::from_millis(50)
            })
            .build(common::pool(2).await)
            .expect("reader");
        let waiter = tokio::spawn(async move {
            let started = std::time::Instant::now();
            reader
                .wait_for_events(Position::START, Duration::from_secs(30))
                .await
                .expect("wait");
            started.elapsed()
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        writer
            .append(AppendRequest::new(
                unique_stream("wake"),
                ExpectedVersion::Any,
                vec![event("W", 1)],
            ))
            .await
            .expect("append");
        let waited = waiter.await.expect("task");
        assert!(
            waited < Duration::from_secs(5),
            "notify {notify}: woke after {waited:?}"
        );
    }
}

/// A burst of appends shares its notifications: the first append's goes out at once, the
/// appends committed within the notification interval after it share the next one.
#[tokio::test]
async fn notifications_are_coalesced() {
    let store = fresh_store().await;
    let proxy = Proxy::to_test_server().await;
    // One connection, so that the warm-up prepares every statement the burst sends.
    let pool = proxy.pool(1).await;
    let interval = Duration::from_secs(1);
    let through = PgStoreOptions::new()
        .schema(store.schema())
        .notify_interval(interval)
        .build(pool)
        .expect("store");
    let stream = unique_stream("coalesce");
    let append = |version: u64| {
        through.append(AppendRequest::new(
            stream.clone(),
            ExpectedVersion::Exact(version),
            vec![event("C", version)],
        ))
    };
    append(0).await.expect("warm-up");
    // The warm-up's notification and its interval pass.
    tokio::time::sleep(interval + Duration::from_millis(300)).await;

    proxy.reset();
    let started = std::time::Instant::now();
    for version in 1..=20 {
        append(version).await.expect("append");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // One notification at once, then at most one per interval until the messages are read
    // (on a busy machine the burst may outlast an interval).
    let elapsed = started.elapsed();
    let allowed = 1 + (elapsed.as_millis() / interval.as_millis()) as usize;
    let messages = proxy.messages();
    let during = messages.matches('E').count() - 20;
    assert!(
        (1..=allowed).contains(&during),
        "{during} notifications for 20 appends in {elapsed:?}: {messages}"
    );
    // Appends committed after the last notification share one more, an interval after it
    // (none is needed when the last notification came after the last append).
    tokio::time::sleep(interval).await;
    let total = proxy.messages().matches('E').count() - 20;
    assert!(
        (total == during || total == during + 1) && total <= allowed + 1,
        "{total} notifications in all, {during} during the burst of {elapsed:?}"
    );
}

/// The head of the log is the last event `read_all` returns.
#[tokio::test]
async fn head_position_is_the_last_readable_event() {
    let store = fresh_store().await;
    assert_eq!(store.head_position().await.expect("head"), None);
    for n in 0..3 {
        store
            .append(AppendRequest::new(
                unique_stream("head"),
                ExpectedVersion::NoStream,
                vec![event("H", n), event("H", n + 1)],
            ))
            .await
            .expect("append");
    }
    let last = read_all(&store, Position::START)
        .await
        .last()
        .map(|e| e.position);
    assert!(last.is_some());
    // Like read_all, the head waits for older transactions of the cluster to end.
    let mut head = store.head_position().await.expect("head");
    for _ in 0..250 {
        assert!(head <= last, "the head is never past the readable log");
        if head == last {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        head = store.head_position().await.expect("head");
    }
    assert_eq!(head, last);
}

/// One runner at a time per projection, across stores and processes.
#[tokio::test]
async fn projection_locks_are_exclusive() {
    let store = fresh_store().await;
    let other = PgStoreOptions::new()
        .schema(store.schema())
        .build(common::pool(1).await)
        .expect("store");
    let lock = store
        .try_lock_projection("totals")
        .await
        .expect("lock")
        .expect("free");
    assert!(
        other
            .try_lock_projection("totals")
            .await
            .expect("lock")
            .is_none()
    );
    let unrelated = other
        .try_lock_projection("other")
        .await
        .expect("lock")
        .expect("another projection is free");
    lock.release().await.expect("release");
    let again = other
        .try_lock_projection("totals")
        .await
        .expect("lock")
        .expect("free after release");
    drop(again);
    let mut freed = false;
    for _ in 0..100 {
        if let Some(lock) = store.try_lock_projection("totals").await.expect("lock") {
            lock.release().await.expect("release");
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(freed, "dropping a lock frees it");
    unrelated.release().await.expect("release");
}

/// An append expecting a version the store has just read or written skips the lookup of that
/// version (a stream never loses an event); it still loses to a newer write of another store,
/// and a version the store has not seen is still looked up, so no append leaves a gap.
#[tokio::test]
async fn appends_after_a_read_keep_every_version_check() {
    let store = fresh_store().await;
    let other = PgStoreOptions::new()
        .schema(store.schema())
        .build(common::pool(2).await)
        .expect("valid options");
    let stream = unique_stream("seen");
    let append = |store: &PgStore, expected: ExpectedVersion, n: u64| {
        let request = AppendRequest::new(stream.clone(), expected, vec![event("E", n)]);
        let store = store.clone();
        async move { store.append(request).await }
    };
    append(&store, ExpectedVersion::NoStream, 1)
        .await
        .expect("v1");
    append(&store, ExpectedVersion::Exact(1), 2)
        .await
        .expect("v2, seen from the append");
    assert_eq!(read_stream(&store, &stream).await.len(), 2);

    // Another store writes version 3: the version this store saw (2) is now stale.
    append(&other, ExpectedVersion::Exact(2), 3)
        .await
        .expect("v3 elsewhere");
    match append(&store, ExpectedVersion::Exact(2), 4).await {
        Err(Error::Conflict(conflict)) => assert_eq!(conflict.actual, 3),
        other => panic!("expected a conflict, got {other:?}"),
    }

    // A version beyond what the stream has, and beyond what the store saw: a conflict, not
    // a gap, for one event and for a batch.
    for events in [1u64, 3] {
        let request = AppendRequest::new(
            stream.clone(),
            ExpectedVersion::Exact(7),
            (0..events).map(|n| event("E", n)).collect(),
        );
        match store.append(request).await {
            Err(Error::Conflict(conflict)) => assert_eq!(conflict.actual, 3),
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
    let versions: Vec<u64> = read_stream(&store, &stream)
        .await
        .iter()
        .map(|e| e.version)
        .collect();
    assert_eq!(versions, [1, 2, 3]);

    // After reading version 3, a batch expecting it appends.
    let outcome = store
        .append(AppendRequest::new(
            stream.clone(),
            ExpectedVersion::Exact(3),
            vec![event("E", 4), event("E", 5)],
        ))
        .await
        .expect("a batch after the read");
    assert_eq!((outcome.first_version, outcome.last_version), (4, 5));
}
