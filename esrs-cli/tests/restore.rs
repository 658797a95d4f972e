//! Restores into another PostgreSQL cluster: a backup of 100,000 events imported with
//! `esrs import` keeps every guarantee there (order, checkpoints, snapshots, idempotency
//! keys), and a `pg_dump`/`pg_restore` copy is refused instead of silently breaking the
//! global order.

mod common;

use common::cluster::Cluster;
use common::*;
use esrs_core::store::{AppendRequest, NewEvent, Snapshot, SnapshotKey};
use esrs_core::{
    BoxError, EventStore, ExpectedVersion, IdempotencyKey, Projection, ProjectionRunner,
    RecordedEvent, StreamId,
};
use esrs_postgres::{Error, PgCheckpoints, PgStore, PgStoreOptions, PgTransaction, sqlx};
use serde_json::Value;

/// Remembers the stream and version of every event it is handed.
struct Seen(Vec<(String, u64)>);

impl Projection<PgTransaction> for Seen {
    type Event = Value;
    fn name(&self) -> &str {
        "seen"
    }
    async fn handle(
        &mut self,
        _: &mut PgTransaction,
        _: Value,
        record: &RecordedEvent,
    ) -> Result<(), BoxError> {
        self.0
            .push((record.stream.as_str().to_owned(), record.version));
        Ok(())
    }
}

fn payload(n: usize) -> NewEvent {
    NewEvent::new(
        "Counted",
        1,
        serde_json::value::to_raw_value(&serde_json::json!({ "n": n })).unwrap(),
    )
}

const KEY: SnapshotKey = SnapshotKey::new(1, 42);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restores_on_another_cluster_and_projections_resume_exactly_where_they_were() {
    let schema = unique("esrs_restore");
    let source = store_at(&database_url(), &schema).await;
    // 100,000 events over 1,000 streams, in appends of 100.
    for i in 0..1_000 {
        let stream = StreamId::new(format!("counter-{}", i % 1_000)).unwrap();
        let events = (0..100).map(|j| payload(i * 100 + j)).collect();
        source
            .append(AppendRequest::new(stream, ExpectedVersion::Any, events))
            .await
            .unwrap();
    }
    for i in 0..10 {
        let stream = StreamId::new(format!("counter-{i}")).unwrap();
        let state = serde_json::value::to_raw_value(&serde_json::json!({ "total": i })).unwrap();
        source
            .save_snapshot(Snapshot::new(stream, 100, KEY, state))
            .await
            .unwrap();
    }
    let keyed = || {
        AppendRequest::new(
            StreamId::new("counter-keyed").unwrap(),
            ExpectedVersion::Any,
            vec![payload(0)],
        )
        .idempotency_key(IdempotencyKey::new("import-once").unwrap())
    };
    source.append(keyed()).await.unwrap();
    let mut runner = ProjectionRunner::new(
        source.clone(),
        PgCheckpoints::new(&source),
        Seen(Vec::new()),
    );
    runner.catch_up().await.unwrap();
    assert_eq!(runner.projection().0.len(), 100_001);
    // Events the projection has not read yet when the backup is taken.
    for i in 0..5 {
        let stream = StreamId::new(format!("late-{i}")).unwrap();
        source
            .append(AppendRequest::new(
                stream,
                ExpectedVersion::NoStream,
                vec![payload(i)],
            ))
            .await
            .unwrap();
    }

    let dir = std::env::temp_dir().join(unique("esrs_restore_file"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("backup.esrs.zst");
    let file_arg = file.to_str().unwrap();
    ok(&esrs(&["--schema", &schema, "export", "--to", file_arg]));

    let cluster = Cluster::start();
    let restored = ok(&esrs_at(
        &cluster.url(),
        &["--schema", &schema, "import", file_arg],
    ));
    assert!(
        restored.contains(
            "100006 events in 1006 streams, 10 snapshots, 1 idempotency keys, 1 checkpoints"
        ),
        "{restored}"
    );
    // The restore test, against the restored store (`cli.rs` runs it through a scratch
    // import).
    ok(&esrs_at(
        &cluster.url(),
        &[
            "--schema",
            &schema,
            "verify",
            file_arg,
            "--against",
            &cluster.url(),
        ],
    ));

    let target = store_at(&cluster.url(), &schema).await;
    // New events on the new cluster sort after every restored one.
    for i in 0..3 {
        let stream = StreamId::new(format!("new-{i}")).unwrap();
        target
            .append(AppendRequest::new(
                stream,
                ExpectedVersion::NoStream,
                vec![payload(i)],
            ))
            .await
            .unwrap();
    }
    // The projection resumes from its restored checkpoint: exactly the five events it had
    // not read, then the three new ones.
    let mut resumed = ProjectionRunner::new(
        target.clone(),
        PgCheckpoints::new(&target),
        Seen(Vec::new()),
    );
    resumed.catch_up().await.unwrap();
    let expected: Vec<(String, u64)> = (0..5)
        .map(|i| (format!("late-{i}"), 1))
        .chain((0..3).map(|i| (format!("new-{i}"), 1)))
        .collect();
    assert_eq!(resumed.projection().0, expected);
    // A rebuild on the new cluster reads the whole log in the original order.
    let mut rebuilt_names = Vec::new();
    {
        use futures_util::StreamExt as _;
        let mut log = target.read_all(esrs_core::Position::START);
        while let Some(event) = log.next().await {
            let event = event.unwrap();
            if event.stream.as_str().starts_with("counter-1") && event.version <= 2 {
                rebuilt_names.push((event.stream.as_str().to_owned(), event.version));
            }
        }
    }
    assert_eq!(
        &rebuilt_names[..3],
        [
            ("counter-1".to_owned(), 1),
            ("counter-1".to_owned(), 2),
            ("counter-10".to_owned(), 1)
        ]
    );
    // Snapshots and idempotency keys came along.
    let snapshot = target
        .load_snapshot(&StreamId::new("counter-3").unwrap(), KEY)
        .await
        .unwrap()
        .expect("the snapshot is restored");
    assert_eq!(snapshot.version, 100);
    assert_eq!(snapshot.payload.get(), r#"{"total":3}"#);
    let again = target.append(keyed()).await.unwrap();
    assert!(
        again.deduplicated,
        "the key is remembered on the new cluster"
    );
    // Event ids, payloads byte for byte, recorded times to the microsecond.
    let compare = "SELECT event_id::text, stream_id, version, payload::text, recorded_at
                   FROM {schema}.events WHERE stream_id = 'counter-7' ORDER BY version";
    let q = compare.replace("{schema}", &schema);
    type Row = (String, String, i64, String, chrono::DateTime<chrono::Utc>);
    let before: Vec<Row> = sqlx::query_as(&q).fetch_all(source.pool()).await.unwrap();
    let after: Vec<Row> = sqlx::query_as(&q).fetch_all(target.pool()).await.unwrap();
    assert_eq!(before, after);

    drop_schema(&source, &schema).await;
    drop(target);
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Burns transaction ids on `store`'s cluster until its counter is past `past`.
async fn advance_transaction_ids(store: &PgStore, past: i64) {
    loop {
        let next: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
            .fetch_one(store.pool())
            .await
            .unwrap();
        if next > past {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pg_dump_restore_into_another_cluster_is_refused_with_the_way_to_restore() {
    let cluster = Cluster::start();
    let fresh = PgStoreOptions::new().connect(&cluster.url()).await.unwrap();
    let counter: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
        .fetch_one(fresh.pool())
        .await
        .unwrap();

    let schema = unique("esrs_dump");
    let source = store_at(&database_url(), &schema).await;
    // The source cluster is ahead of the new one, as a production cluster is.
    advance_transaction_ids(&source, counter + 100).await;
    append(&source, "dumped-1", "Dumped", 3).await;
    let dump = std::env::temp_dir().join(format!("{}.dump", unique("esrs_dump")));
    let out = std::process::Command::new(cluster.program("pg_dump"))
        .args(["-Fc", "-n", &schema, "-f"])
        .arg(&dump)
        .arg(database_url())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = std::process::Command::new(cluster.program("pg_restore"))
        .args(["-d", &cluster.url()])
        .arg(&dump)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let restored = PgStoreOptions::new()
        .schema(&schema)
        .connect(&cluster.url())
        .await
        .unwrap();
    let error = restored.migrate().await.unwrap_err();
    let Error::RestoredFromAnotherCluster {
        schema: s,
        stored,
        next,
    } = &error
    else {
        panic!("expected the refusal, got {error:?}");
    };
    assert_eq!(s, &schema);
    assert!(stored >= next);
    let text = error.to_string();
    assert!(text.contains("restore it with `esrs import`"), "{text}");
    // The tool's user reads the same.
    let tool = esrs_at(
        &cluster.url(),
        &["--schema", &schema, "import", "/dev/null"],
    );
    assert_eq!(tool.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&tool.stderr).contains("restored from another cluster"),
        "{}",
        String::from_utf8_lossy(&tool.stderr)
    );

    drop_schema(&source, &schema).await;
    let _ = std::fs::remove_file(&dump);
}
