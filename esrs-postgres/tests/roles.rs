//! Least privilege: an owner role migrates, an application role granted by
//! `PgStore::grant_app_role` uses the store and cannot rewrite history.

mod common;

use std::time::Duration;

use esrs_core::conformance::{event, payload, unique_stream};
use esrs_core::store::{AppendRequest, Snapshot, SnapshotKey};
use esrs_core::{
    BoxError, EventStore, ExpectedVersion, IdempotencyKey, Position, Projection, ProjectionRunner,
    RecordedEvent,
};
use esrs_postgres::sqlx::postgres::PgPoolOptions;
use esrs_postgres::sqlx::{self, Connection, Executor};
use esrs_postgres::{PgCheckpoints, PgStoreOptions, PgTransaction};
use futures_util::TryStreamExt;

/// A LOGIN role with a name no other test uses, dropped (with its grants) when this is.
struct ThrowawayRole {
    name: String,
}

impl ThrowawayRole {
    async fn create() -> Self {
        let name = format!(
            "esrs_app_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..16]
        );
        let mut conn = sqlx::PgConnection::connect_with(&common::connect_options())
            .await
            .expect("the test database is reachable");
        conn.execute(&*format!("CREATE ROLE {name} LOGIN"))
            .await
            .expect("CREATE ROLE");
        conn.close().await.ok();
        Self { name }
    }
}

impl Drop for ThrowawayRole {
    fn drop(&mut self) {
        let name = &self.name;
        common::clean_up(format!("DROP OWNED BY {name}; DROP ROLE IF EXISTS {name}"));
    }
}

/// Counts the events it sees; its checkpoint is what the test is about.
#[derive(Debug, Default)]
struct Counter {
    seen: usize,
}

impl Projection<PgTransaction> for Counter {
    type Event = serde_json::Value;

    fn name(&self) -> &str {
        "role-counter"
    }

    fn handles(&self, name: &str) -> bool {
        name == "Granted"
    }

    async fn handle(
        &mut self,
        _tx: &mut PgTransaction,
        _event: serde_json::Value,
        _envelope: &RecordedEvent,
    ) -> Result<(), BoxError> {
        self.seen += 1;
        Ok(())
    }
}

fn assert_send<T: Send>(_: &T) {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_role_uses_the_store_but_cannot_rewrite_history() {
    let role = ThrowawayRole::create().await;
    // The owner: the test's superuser migrates the schema and grants the application role.
    let owner = common::fresh_store().await;
    let grant = owner.grant_app_role(&role.name);
    assert_send(&grant);
    grant.await.expect("grant");
    owner
        .grant_app_role(&role.name)
        .await
        .expect("granting again changes nothing");

    let app_pool = PgPoolOptions::new()
        .max_connections(3)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(common::connect_options().username(&role.name))
        .await
        .expect("the app role logs in");
    let app = PgStoreOptions::new()
        .schema(owner.schema())
        .settle_time(Duration::from_secs(5))
        .build(app_pool.clone())
        .expect("store");

    // Everything the application does works.
    assert_eq!(
        app.schema_version().await.expect("schema version"),
        owner.schema_version().await.expect("schema version")
    );
    let stream = unique_stream("granted");
    app.append(AppendRequest::new(
        stream.clone(),
        ExpectedVersion::NoStream,
        vec![event("Granted", 1), event("Granted", 2)],
    ))
    .await
    .expect("append");
    let keyed = AppendRequest::new(
        stream.clone(),
        ExpectedVersion::Exact(2),
        vec![event("Granted", 3)],
    )
    .idempotency_key(IdempotencyKey::new(format!("{stream}-3")).expect("key"));
    let first = app.append(keyed.clone()).await.expect("keyed append");
    let again = app.append(keyed).await.expect("keyed repeat");
    assert_eq!(first.last_version, again.last_version);
    assert!(again.deduplicated);
    for n in 4..=6 {
        app.append(AppendRequest::new(
            stream.clone(),
            ExpectedVersion::Any,
            vec![event("Granted", n)],
        ))
        .await
        .expect("append without the first-write path");
    }
    let read: Vec<_> = app
        .read_stream(&stream, 1, u64::MAX)
        .try_collect()
        .await
        .expect("read_stream");
    assert_eq!(read.len(), 6);
    assert_eq!(app.stream_version(&stream).await.expect("version"), 6);
    let key = SnapshotKey::new(1, 7);
    for version in [2, 4] {
        app.save_snapshot(Snapshot::new(
            stream.clone(),
            version,
            key,
            payload(serde_json::json!({ "at": version })),
        ))
        .await
        .expect("save_snapshot");
    }
    for fingerprint in 8..12 {
        app.save_snapshot(Snapshot::new(
            stream.clone(),
            5,
            SnapshotKey::new(1, fingerprint),
            payload(serde_json::json!({})),
        ))
        .await
        .expect("a save that prunes older keys");
    }
    let items: Vec<_> = app
        .read_for_fold(
            &stream,
            1,
            esrs_core::Version::MAX,
            Some(SnapshotKey::new(1, 11)),
        )
        .try_collect()
        .await
        .expect("read_for_fold");
    assert_eq!(items.len(), 2, "the snapshot at 5 and event 6");
    let mut runner =
        ProjectionRunner::new(app.clone(), PgCheckpoints::new(&app), Counter::default());
    let caught_up = runner.catch_up().await.expect("a projection runs");
    assert_eq!(runner.projection().seen, 6);
    assert!(caught_up > Position::START);
    let mut runner =
        ProjectionRunner::new(app.clone(), PgCheckpoints::new(&app), Counter::default());
    runner.catch_up().await.expect("a second run resumes");
    assert_eq!(runner.projection().seen, 0, "from its saved checkpoint");

    // What would rewrite history is refused for lack of privilege, before any trigger.
    let schema = owner.schema().to_owned();
    let mut conn = app_pool.acquire().await.expect("a connection");
    for statement in [
        format!("UPDATE {schema}.events SET name = 'Forged'"),
        format!("DELETE FROM {schema}.events"),
        format!("TRUNCATE {schema}.events"),
        format!("ALTER TABLE {schema}.events DISABLE TRIGGER events_append_only"),
        format!("ALTER TABLE {schema}.events DISABLE TRIGGER ALL"),
        format!("DROP TABLE {schema}.events"),
        format!("DELETE FROM {schema}.migrations"),
        format!("CREATE TABLE {schema}.intruder (x int)"),
    ] {
        let error = conn
            .execute(&*statement)
            .await
            .expect_err(&format!("{statement:?} is refused"));
        let code = error
            .as_database_error()
            .and_then(|e| e.code().map(|c| c.into_owned()));
        assert_eq!(
            code.as_deref(),
            Some("42501"),
            "{statement:?} fails with insufficient_privilege, got {error}"
        );
    }
    drop(conn);
    let read: Vec<_> = owner
        .read_stream(&stream, 1, u64::MAX)
        .try_collect()
        .await
        .expect("read_stream");
    assert_eq!(read.len(), 6, "history is intact");
    app_pool.close().await;
}

/// The owner role, the one that migrates: it owns the tables, so it can disable the
/// append-only triggers. This is why the application should not connect as it.
#[tokio::test]
async fn the_owner_can_disable_the_triggers() {
    let owner = common::fresh_store().await;
    let schema = owner.schema().to_owned();
    let mut tx = owner.pool().begin().await.expect("begin");
    tx.execute(&*format!(
        "ALTER TABLE {schema}.events DISABLE TRIGGER events_append_only"
    ))
    .await
    .expect("the owner alters its table");
    tx.rollback().await.expect("rollback");
}
