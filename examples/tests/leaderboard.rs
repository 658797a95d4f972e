//! The leaderboard against PostgreSQL and Redis: crashes, concurrent writers and rebuilds
//! never make a read model miss or double-count a score.
//!
//! Needs PostgreSQL (`DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/test`) and
//! Redis (`REDIS_URL`, default `redis://127.0.0.1:6379`). Each test works in a schema and
//! under Redis keys of its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use esrs_core::projection::Phase;
use esrs_core::projection::ProjectionError;
use esrs_core::{
    BoxError, EventStore, IdempotencyKey, Position, Projection, ProjectionRunner, RecordedEvent,
    StreamId,
};
use esrs_examples::leaderboard::{
    PgLeaderboard, PlayerEvent, Ranked, RedisLeaderboard, player_stream, record_score, score,
};
use esrs_postgres::{PgCheckpoints, PgStore, PgStoreOptions, PgTransaction};

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A store in a schema of its own, dropped with [`Fixture::cleanup`].
struct Fixture {
    store: PgStore,
    schema: String,
    redis_prefix: String,
}

/// How long the tests' reads of the global log wait for other tests' open transactions.
const SETTLE_TIME: Duration = Duration::from_secs(5);

impl Fixture {
    async fn new() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let schema = format!("lb_{}", &id[..16]);
        // The tests of this file run side by side, and their runners' batch transactions hold
        // the cluster's global-log horizon back for moments (seconds on a loaded machine). A
        // rebuild reads the log to what it can read, waiting up to the settle time for such
        // transactions; these tests compare complete rebuilds, so they wait longer than the
        // default second.
        let store = PgStoreOptions::new()
            .schema(&schema)
            .settle_time(SETTLE_TIME)
            .connect(&database_url())
            .await
            .expect("PostgreSQL is reachable at DATABASE_URL");
        store.migrate().await.unwrap();
        Self {
            store,
            redis_prefix: format!("esrs-test:leaderboard:{id}"),
            schema,
        }
    }

    /// A table read model named `name`, in the fixture's schema.
    async fn table(&self, name: &str) -> PgLeaderboard {
        let table = PgLeaderboard::new(name, format!("{}.{name}", self.schema));
        table.create_table(self.store.pool()).await.unwrap();
        table
    }

    async fn sorted_set(&self, name: &str) -> RedisLeaderboard {
        RedisLeaderboard::connect(name, &redis_url(), &format!("{}:{name}", self.redis_prefix))
            .await
            .expect("Redis is reachable at REDIS_URL")
    }

    fn checkpoints(&self) -> PgCheckpoints {
        PgCheckpoints::new(&self.store)
    }

    async fn ranking(&self, table: &PgLeaderboard) -> Vec<Ranked> {
        table.ranking(self.store.pool()).await.unwrap()
    }

    /// A fresh read model built from the whole log.
    async fn fresh_rebuild(&self) -> Vec<Ranked> {
        let table = self.table("rebuilt").await;
        let mut runner = ProjectionRunner::new(self.store.clone(), self.checkpoints(), table);
        runner.rebuild().await.unwrap();
        self.ranking(runner.projection()).await
    }

    /// Asserts that each player's events were applied exactly once: as many as the
    /// player's stream holds.
    async fn assert_each_applied_once(&self, table: &PgLeaderboard) {
        let applied = table.events_applied(self.store.pool()).await.unwrap();
        assert!(!applied.is_empty());
        for (player, events) in applied {
            let stream = player_stream(&StreamId::new(&player).unwrap()).unwrap();
            let version = self.store.stream_version(&stream).await.unwrap();
            assert_eq!(events, version, "events applied for {player}");
        }
    }

    async fn cleanup(self, redis: &[&RedisLeaderboard]) {
        for r in redis {
            r.delete().await.unwrap();
        }
        sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.schema))
            .execute(self.store.pool())
            .await
            .unwrap();
    }
}

/// Appends `n` scores over `players` players; returns the last position.
async fn seed(store: &PgStore, n: usize, players: usize) -> Position {
    let mut last = Position::START;
    for i in 0..n {
        let player = StreamId::new(format!("p{}", i % players)).unwrap();
        let points = (i % 13) as i64 - 3;
        let outcome = record_score(store, &player, points).await.unwrap();
        last = outcome.last_position.unwrap();
    }
    last
}

/// Wraps a projection to count handler calls and, at one call, stop forever (to be killed).
#[derive(Debug)]
struct Gated<P> {
    inner: P,
    calls: Arc<AtomicU64>,
    block_at: Option<u64>,
    reached: Arc<tokio::sync::Notify>,
}

impl<P> Gated<P> {
    fn new(inner: P, block_at: Option<u64>) -> Self {
        Self {
            inner,
            calls: Arc::default(),
            block_at,
            reached: Arc::default(),
        }
    }
}

impl<Tx: Send, P: Projection<Tx, Event = PlayerEvent>> Projection<Tx> for Gated<P> {
    type Event = PlayerEvent;
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn handle(
        &mut self,
        tx: &mut Tx,
        event: PlayerEvent,
        envelope: &RecordedEvent,
    ) -> Result<(), BoxError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if self.block_at == Some(call) {
            self.reached.notify_one();
            std::future::pending::<()>().await;
        }
        self.inner.handle(tx, event, envelope).await
    }
    async fn reset(&mut self, tx: &mut Tx) -> Result<(), BoxError> {
        self.inner.reset(tx).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_mid_batch_then_restart_equals_a_fresh_rebuild() {
    let fx = Fixture::new().await;
    seed(&fx.store, 400, 17).await;
    let table = fx.table("leaderboard").await;
    let redis = fx.sorted_set("leaderboard_redis").await;

    // Both read models are killed in the middle of a batch.
    let pg = Gated::new(table.clone(), Some(250));
    let pg_reached = pg.reached.clone();
    let running = ProjectionRunner::new(fx.store.clone(), fx.checkpoints(), pg)
        .batch_size(100)
        .spawn();
    pg_reached.notified().await;
    running.abort().await;
    let rd = Gated::new(redis.clone(), Some(150));
    let rd_reached = rd.reached.clone();
    let running = ProjectionRunner::new(fx.store.clone(), fx.checkpoints(), rd)
        .batch_size(100)
        .spawn();
    rd_reached.notified().await;
    running.abort().await;

    // The table holds exactly the committed batches: 200 events.
    let applied: u64 = table
        .events_applied(fx.store.pool())
        .await
        .unwrap()
        .values()
        .sum();
    assert_eq!(applied, 200);

    // Restart both (the killed runners' locks go with their connections), and write more
    // while they run.
    let pg = Gated::new(table.clone(), None);
    let pg_calls = pg.calls.clone();
    let pg_running = ProjectionRunner::new(fx.store.clone(), fx.checkpoints(), pg)
        .batch_size(100)
        .wait_for_lock(Duration::from_millis(20))
        .spawn();
    let rd_running = ProjectionRunner::new(fx.store.clone(), fx.checkpoints(), redis.clone())
        .batch_size(100)
        .wait_for_lock(Duration::from_millis(20))
        .spawn();
    let head = seed(&fx.store, 30, 5).await;
    pg_running.wait_for(head).await.unwrap();
    rd_running.wait_for(head).await.unwrap();
    pg_running.stop().await.unwrap();
    rd_running.stop().await.unwrap();

    // The restarted table runner handled only what was not committed.
    assert_eq!(pg_calls.load(Ordering::SeqCst), 200 + 30);
    fx.assert_each_applied_once(&table).await;
    let ranking = fx.ranking(&table).await;
    assert_eq!(ranking, fx.fresh_rebuild().await);
    // The Redis read model got part of a batch twice, and counted it once.
    assert_eq!(redis.ranking().await.unwrap(), ranking);
    fx.cleanup(&[&redis]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_concurrent_writers_while_live_equals_a_fresh_rebuild() {
    let fx = Fixture::new().await;
    seed(&fx.store, 50, 7).await;
    let table = fx.table("leaderboard").await;
    let redis = fx.sorted_set("leaderboard_redis").await;
    let pg_running = ProjectionRunner::new(fx.store.clone(), fx.checkpoints(), table.clone())
        .batch_size(16)
        .spawn();
    let rd_running = ProjectionRunner::new(fx.store.clone(), fx.checkpoints(), redis.clone())
        .batch_size(16)
        .spawn();

    let mut writers = Vec::new();
    for w in 0..8 {
        let store = fx.store.clone();
        writers.push(tokio::spawn(async move {
            let mut last = Position::START;
            for i in 0..40 {
                // Writers share players, so their appends interleave on the same streams.
                let player = StreamId::new(format!("p{}", (w + i) % 11)).unwrap();
                let outcome = record_score(&store, &player, (w * 3 + i) as i64 % 17)
                    .await
                    .unwrap();
                last = last.max(outcome.last_position.unwrap());
            }
            last
        }));
    }
    let mut head = Position::START;
    for w in writers {
        head = head.max(w.await.unwrap());
    }
    pg_running.wait_for(head).await.unwrap();
    rd_running.wait_for(head).await.unwrap();
    let status = pg_running.status();
    pg_running.stop().await.unwrap();
    rd_running.stop().await.unwrap();

    // The runner measures its lag against the store's head.
    assert_eq!(status.head, Some(head));
    assert_eq!(status.events_behind(), Some(0));
    assert_eq!(
        status.handled,
        50 + 8 * 40,
        "every event handled exactly once"
    );
    fx.assert_each_applied_once(&table).await;
    let ranking = fx.ranking(&table).await;
    assert_eq!(ranking, fx.fresh_rebuild().await);
    assert_eq!(redis.ranking().await.unwrap(), ranking);
    let total: i64 = ranking.iter().map(|r| r.score).sum();
    let expected: i64 = (0..50).map(|i| (i % 13) as i64 - 3).sum::<i64>()
        + (0..8)
            .flat_map(|w| (0..40).map(move |i| (w * 3 + i) as i64 % 17))
            .sum::<i64>();
    assert_eq!(total, expected);
    fx.cleanup(&[&redis]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_equals_the_incremental_result() {
    let fx = Fixture::new().await;
    let table = fx.table("leaderboard").await;
    let redis = fx.sorted_set("leaderboard_redis").await;
    let mut pg =
        ProjectionRunner::new(fx.store.clone(), fx.checkpoints(), table.clone()).batch_size(25);
    let mut rd =
        ProjectionRunner::new(fx.store.clone(), fx.checkpoints(), redis.clone()).batch_size(25);
    for round in 0..4 {
        seed(&fx.store, 40 + round * 7, 3 + round).await;
        pg.catch_up().await.unwrap();
        rd.catch_up().await.unwrap();
    }
    let incremental = fx.ranking(&table).await;
    assert_eq!(redis.ranking().await.unwrap(), incremental);

    pg.rebuild().await.unwrap();
    rd.rebuild().await.unwrap();
    assert_eq!(fx.ranking(&table).await, incremental);
    assert_eq!(redis.ranking().await.unwrap(), incremental);
    fx.assert_each_applied_once(&table).await;
    assert_eq!(pg.status().rebuilds, 1);
    fx.cleanup(&[&redis]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_runner_per_projection_across_connections() {
    let fx = Fixture::new().await;
    seed(&fx.store, 20, 3).await;
    let table = fx.table("leaderboard").await;
    let first = ProjectionRunner::new(fx.store.clone(), fx.checkpoints(), table.clone()).spawn();
    first.wait_caught_up().await.unwrap();

    // Another process: its own pool on the same schema.
    let other = PgStoreOptions::new()
        .schema(&fx.schema)
        .settle_time(SETTLE_TIME)
        .connect(&database_url())
        .await
        .unwrap();
    let mut second =
        ProjectionRunner::new(other.clone(), PgCheckpoints::new(&other), table.clone());
    assert!(matches!(
        second.catch_up().await,
        Err(ProjectionError::AlreadyRunning { projection }) if projection == "leaderboard"
    ));
    // A runner of another projection is not held back.
    let mut unrelated = ProjectionRunner::new(
        other.clone(),
        PgCheckpoints::new(&other),
        fx.table("other").await,
    );
    unrelated.catch_up().await.unwrap();

    let waiting = ProjectionRunner::new(other.clone(), PgCheckpoints::new(&other), table.clone())
        .wait_for_lock(Duration::from_millis(20))
        .spawn();
    let mut status = waiting.subscribe();
    status
        .wait_for(|s| s.phase == Phase::WaitingForLock)
        .await
        .unwrap();
    first.stop().await.unwrap();
    waiting.wait_caught_up().await.unwrap();
    let head = seed(&fx.store, 5, 3).await;
    waiting.wait_for(head).await.unwrap();
    let runner = waiting.stop().await.unwrap();
    assert_eq!(runner.status().handled, 5);
    fx.assert_each_applied_once(&table).await;
    fx.cleanup(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_are_compare_and_set() {
    use esrs_core::projection::CheckpointError;
    use esrs_core::projection::CheckpointStore;

    let fx = Fixture::new().await;
    let checkpoints = fx.checkpoints();
    assert_eq!(checkpoints.load("p").await.unwrap(), Position::START);
    let lock = checkpoints.try_lock("p").await.unwrap().expect("free");
    let mut tx = checkpoints.begin().await.unwrap();
    checkpoints
        .save(&mut tx, &lock, "p", Position::START, Position::new(7, 3))
        .await
        .unwrap();
    checkpoints.commit(tx).await.unwrap();
    assert_eq!(checkpoints.load("p").await.unwrap(), Position::new(7, 3));

    // A runner that did not see that move fails, and saves nothing.
    let mut tx = checkpoints.begin().await.unwrap();
    let err = checkpoints
        .save(&mut tx, &lock, "p", Position::START, Position::new(9, 9))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        CheckpointError::Moved { expected, actual: Some(actual) }
            if expected == Position::START && actual == Position::new(7, 3)
    ));
    drop(tx);
    // An abandoned transaction leaves the checkpoint where it was.
    let mut tx = checkpoints.begin().await.unwrap();
    checkpoints
        .save(
            &mut tx,
            &lock,
            "p",
            Position::new(7, 3),
            Position::new(8, 4),
        )
        .await
        .unwrap();
    drop(tx);
    assert_eq!(checkpoints.load("p").await.unwrap(), Position::new(7, 3));
    checkpoints.unlock(lock).await.unwrap();
    fx.cleanup(&[]).await;
}

/// Fails on every event.
#[derive(Debug)]
struct Refusing(PgLeaderboard);

impl Projection<PgTransaction> for Refusing {
    type Event = PlayerEvent;
    fn name(&self) -> &str {
        self.0.name()
    }
    async fn handle(
        &mut self,
        tx: &mut PgTransaction,
        event: PlayerEvent,
        envelope: &RecordedEvent,
    ) -> Result<(), BoxError> {
        // The write happens, then the failure rolls it back with the append.
        self.0.handle(tx, event, envelope).await?;
        Err("refused".into())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_projection_commits_with_the_append() {
    let fx = Fixture::new().await;
    let mut inline = fx.table("inline").await;
    for i in 0..60 {
        let player = StreamId::new(format!("p{}", i % 7)).unwrap();
        let outcome = fx
            .store
            .append_inline(score(&player, i % 9 - 2).unwrap(), &mut inline)
            .await
            .unwrap();
        // The read model is up to date as soon as the append returns.
        let applied = inline.events_applied(fx.store.pool()).await.unwrap();
        assert_eq!(applied[player.as_str()], outcome.last_version);
    }
    fx.assert_each_applied_once(&inline).await;
    let ranking = fx.ranking(&inline).await;
    assert_eq!(ranking, fx.fresh_rebuild().await);

    // A failing handler: neither the event nor the read model change.
    let player = StreamId::new("p1").unwrap();
    let version = fx
        .store
        .stream_version(&player_stream(&player).unwrap())
        .await
        .unwrap();
    let mut refusing = Refusing(inline.clone());
    let err = fx
        .store
        .append_inline(score(&player, 1000).unwrap(), &mut refusing)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProjectionError::Handler { ref projection, .. } if projection == "inline")
    );
    assert_eq!(
        fx.store
            .stream_version(&player_stream(&player).unwrap())
            .await
            .unwrap(),
        version
    );
    assert_eq!(fx.ranking(&inline).await, ranking);

    // A repeated idempotency key applies nothing again.
    let key = IdempotencyKey::new(uuid::Uuid::new_v4().to_string()).unwrap();
    let first = fx
        .store
        .append_inline(
            score(&player, 7).unwrap().idempotency_key(key.clone()),
            &mut inline,
        )
        .await
        .unwrap();
    let again = fx
        .store
        .append_inline(score(&player, 7).unwrap().idempotency_key(key), &mut inline)
        .await
        .unwrap();
    assert!(!first.deduplicated && again.deduplicated);
    assert_eq!(again.last_version, first.last_version);
    fx.assert_each_applied_once(&inline).await;
    assert_eq!(fx.ranking(&inline).await, fx.fresh_rebuild().await);
    fx.cleanup(&[]).await;
}
