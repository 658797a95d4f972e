//! Projection runners over PostgreSQL: their locks, their connections, their checkpoints.

mod common;

use std::time::{Duration, Instant};

use common::{TestStore, fresh_store};
use esrs_core::conformance::{event, unique_stream};
use esrs_core::projection::CheckpointError;
use esrs_core::projection::ProjectionError;
use esrs_core::store::AppendRequest;
use esrs_core::{
    BoxError, EventStore, ExpectedVersion, Position, Projection, ProjectionRunner, RecordedEvent,
};
use esrs_postgres::sqlx::postgres::PgPoolOptions;
use esrs_postgres::sqlx::{self};
use esrs_postgres::{PgCheckpointError, PgCheckpoints, PgStore, PgStoreOptions, PgTransaction};

/// Records each event it handles in a table of the store's schema (without a key, so that an
/// event applied twice shows as two rows).
#[derive(Debug)]
struct Applied {
    table: String,
}

impl Applied {
    async fn new(store: &PgStore) -> Self {
        let table = format!("{}.applied", store.schema());
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (stream text, version bigint)"
        ))
        .execute(store.pool())
        .await
        .expect("create the read model");
        Self { table }
    }

    /// Fails if an event was applied twice.
    async fn assert_each_once(&self, store: &PgStore) {
        let twice: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) - count(DISTINCT (stream, version)) FROM {}",
            self.table
        ))
        .fetch_one(store.pool())
        .await
        .expect("count");
        assert_eq!(twice, 0, "events applied more than once");
    }

    async fn count(&self, store: &PgStore) -> i64 {
        sqlx::query_scalar(&format!("SELECT count(*) FROM {}", self.table))
            .fetch_one(store.pool())
            .await
            .expect("count")
    }
}

impl Projection<PgTransaction> for Applied {
    type Event = serde_json::Value;
    fn name(&self) -> &str {
        "applied"
    }
    async fn handle(
        &mut self,
        tx: &mut PgTransaction,
        _event: serde_json::Value,
        envelope: &RecordedEvent,
    ) -> Result<(), BoxError> {
        sqlx::query(&format!(
            "INSERT INTO {} (stream, version) VALUES ($1, $2)",
            self.table
        ))
        .bind(envelope.stream.as_str())
        .bind(i64::try_from(envelope.version)?)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

/// Appends `n` events, `per_append` at a time, to streams of their own.
async fn seed(store: &PgStore, n: usize, per_append: usize) -> Position {
    let mut last = Position::START;
    for chunk in 0..n.div_ceil(per_append) {
        let events = (0..per_append.min(n - chunk * per_append))
            .map(|i| event("E", i as u64))
            .collect();
        let outcome = store
            .append(AppendRequest::new(
                unique_stream("runner"),
                ExpectedVersion::NoStream,
                events,
            ))
            .await
            .expect("append");
        last = outcome.last_position.expect("a position");
    }
    last
}

/// Another store on the same schema, with a pool of its own: another process, say.
async fn other_process(store: &TestStore) -> PgStore {
    PgStoreOptions::new()
        .schema(store.schema())
        .build(common::pool(2).await)
        .expect("store")
}

/// Item 9 of issue 11: a runner reads a page of the log on one connection while its batch's
/// transaction needs another, so on a pool of one it waited for itself until the pool's
/// acquire timeout. It is refused at start-up with a typed error, and a pool of two runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_too_small_for_a_runner_is_refused_at_start_up() {
    let store = fresh_store().await;
    seed(&store, 1_200, 100).await;
    let one = PgStoreOptions::new()
        .schema(store.schema())
        .build(
            PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(3))
                .connect_with(common::connect_options())
                .await
                .expect("pool"),
        )
        .expect("store");
    let projection = Applied::new(&one).await;
    let mut runner = ProjectionRunner::new(one.clone(), PgCheckpoints::new(&one), projection);
    let started = Instant::now();
    let error = runner.catch_up().await.expect_err("refused");
    let ProjectionError::Checkpoint {
        source: CheckpointError::Backend(source),
        ..
    } = &error
    else {
        panic!("not a checkpoint store error: {error:?}");
    };
    assert!(
        matches!(
            source.downcast_ref::<PgCheckpointError>(),
            Some(PgCheckpointError::PoolTooSmall {
                max_connections: 1,
                needed: 2,
                ..
            })
        ),
        "not PoolTooSmall: {error:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused at once, not after the acquire timeout"
    );
    assert_eq!(runner.projection().count(&one).await, 0);

    let two = PgStoreOptions::new()
        .schema(store.schema())
        .build(
            PgPoolOptions::new()
                .max_connections(2)
                .acquire_timeout(Duration::from_secs(3))
                .connect_with(common::connect_options())
                .await
                .expect("pool"),
        )
        .expect("store");
    let projection = Applied::new(&two).await;
    let mut runner = ProjectionRunner::new(two.clone(), PgCheckpoints::new(&two), projection);
    runner.catch_up().await.expect("a pool of two runs");
    assert_eq!(runner.projection().count(&two).await, 1_200);
    runner.projection().assert_each_once(&two).await;
}

/// Item 7 of issue 11: a lock attempt cancelled at any point (here by timeouts of every
/// length from nothing to past its end) leaves no lock on a connection of the pool: the
/// projection is free again at once for a runner of another process, while the pool that
/// made the attempts stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_lock_attempt_leaves_no_lock_behind() {
    let store = fresh_store().await;
    let other = other_process(&store).await;
    let mut cancelled = 0;
    for round in 0..400u64 {
        let attempt = store.try_lock_projection("cancelled");
        match tokio::time::timeout(Duration::from_micros(round * 5), attempt).await {
            Ok(lock) => {
                if let Some(lock) = lock.expect("lock") {
                    lock.release().await.expect("release");
                }
            }
            Err(_) => cancelled += 1,
        }
        // Whatever the attempt got to, the lock is free again for someone else within a
        // moment (the time a dropped connection takes to end on the server).
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            if let Some(lock) = other.try_lock_projection("cancelled").await.expect("lock") {
                lock.release().await.expect("release");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: a cancelled attempt left the lock held by the pool"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    assert!(cancelled > 0, "some attempts were cancelled");
}

/// Item 8 of issue 11: `abort` returns once the lock is given back, so a runner started
/// right after it (here in another process) gets the lock at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_returns_once_the_lock_is_free() {
    let store = fresh_store().await;
    seed(&store, 20, 5).await;
    let other = other_process(&store).await;
    let projection = Applied::new(&store).await;
    let mut runner = Some(ProjectionRunner::new(
        store.store.clone(),
        PgCheckpoints::new(&store),
        projection,
    ));
    for round in 0..200 {
        let running = runner.take().expect("a runner").spawn();
        if round % 2 == 0 {
            running.wait_caught_up().await.expect("caught up");
        }
        running.abort().await;
        let lock = other
            .try_lock_projection("applied")
            .await
            .expect("lock")
            .unwrap_or_else(|| panic!("round {round}: the lock is still held after abort"));
        lock.release().await.expect("release");
        runner = Some(ProjectionRunner::new(
            store.store.clone(),
            PgCheckpoints::new(&store),
            Applied::new(&store).await,
        ));
    }
    let applied = Applied::new(&store).await;
    assert_eq!(applied.count(&store).await, 20, "every event applied");
    applied.assert_each_once(&store).await;
}

/// The backend holding the advisory lock of `projection`, if any.
async fn lock_holder(store: &PgStore, projection: &str) -> Option<i32> {
    sqlx::query_scalar(
        "SELECT l.pid FROM pg_locks l, hashtextextended($1, 0) AS k
         WHERE l.locktype = 'advisory'
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND l.classid = ((k >> 32) & 4294967295)::oid
           AND l.objid = (k & 4294967295)::oid
           AND l.objsubid = 1 AND l.granted",
    )
    .bind(format!("esrs projection {}.{projection}", store.schema()))
    .fetch_optional(store.pool())
    .await
    .expect("pg_locks")
}

/// Item 6 of issue 11: the connection holding a runner's lock dies (its backend is
/// terminated) without the runner knowing, and a second runner takes the lock. The first
/// fails with `LockLost` at its next save, nothing of its batch committed; the new holder
/// goes on, and every event is applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_that_lost_its_lock_stops_at_its_next_save_and_the_new_holder_goes_on() {
    let store = fresh_store().await;
    seed(&store, 30, 3).await;
    let applied = Applied::new(&store).await;
    let first = ProjectionRunner::new(
        store.store.clone(),
        PgCheckpoints::new(&store),
        Applied::new(&store).await,
    )
    .poll_interval(Duration::from_millis(50))
    .spawn();
    first.wait_caught_up().await.expect("caught up");

    let pid = lock_holder(&store, "applied")
        .await
        .expect("the lock is held");
    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(store.pool())
        .await
        .expect("terminate");
    assert!(terminated);

    // A writer appends all along, so that both runners have batches to commit while the
    // second takes over.
    let writer = {
        let store = store.store.clone();
        tokio::spawn(async move {
            let mut head = Position::START;
            for _ in 0..25 {
                head = seed(&store, 2, 1).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            head
        })
    };
    let second = ProjectionRunner::new(
        store.store.clone(),
        PgCheckpoints::new(&store),
        Applied::new(&store).await,
    )
    .poll_interval(Duration::from_millis(50))
    .wait_for_lock(Duration::from_millis(10))
    .spawn();
    let head = writer.await.expect("the writer");
    tokio::time::timeout(Duration::from_secs(10), second.wait_for(head))
        .await
        .expect("the second runner takes the freed lock")
        .expect("the new holder goes on");
    // And once more, after the takeover.
    let head = seed(&store, 30, 3).await;
    second.wait_for(head).await.expect("the new holder goes on");
    let ended = tokio::time::timeout(Duration::from_secs(10), first.join())
        .await
        .expect("the first runner stops");
    assert!(
        matches!(
            ended,
            Err(ProjectionError::Checkpoint {
                source: CheckpointError::LockLost { .. },
                ..
            })
        ),
        "the first runner fails with LockLost: {ended:?}"
    );
    assert!(!second.is_finished(), "the new holder is still running");
    second.stop().await.expect("the new holder stops cleanly");
    assert_eq!(applied.count(&store).await, 110);
    applied.assert_each_once(&store).await;
}

/// Writes each event's row like [`Applied`], and fails on the events of version `fails_at`.
struct FailsAt {
    applied: Applied,
    fails_at: u64,
}

impl Projection<PgTransaction> for FailsAt {
    type Event = serde_json::Value;
    fn name(&self) -> &str {
        "fails_at"
    }
    async fn handle(
        &mut self,
        tx: &mut PgTransaction,
        event: serde_json::Value,
        envelope: &RecordedEvent,
    ) -> Result<(), BoxError> {
        self.applied.handle(tx, event, envelope).await?;
        if envelope.version == self.fails_at {
            return Err("the read model refuses this event".into());
        }
        Ok(())
    }
}

/// A batch whose handler fails is rolled back before the runner reports the failure: the
/// rows its earlier events wrote are gone and hold no lock, even on a runtime that runs
/// nothing else until the caller lets it (here the test's current-thread runtime, blocked
/// while the table's locks are checked).
#[tokio::test]
async fn a_failed_batch_is_rolled_back_before_the_failure_is_reported() {
    let store = fresh_store().await;
    seed(&store, 3, 3).await;
    let applied = Applied::new(&store).await;
    let table = applied.table.clone();
    let projection = FailsAt {
        applied,
        fails_at: 3,
    };
    let mut runner =
        ProjectionRunner::new(store.store.clone(), PgCheckpoints::new(&store), projection);
    let error = runner.catch_up().await.expect_err("the handler fails");
    assert!(
        matches!(error, ProjectionError::Handler { .. }),
        "{error:?}"
    );
    assert!(
        common::lockable_now(&table),
        "the failed batch still holds its locks"
    );
    let checkpoints = PgCheckpoints::new(&store);
    assert_eq!(
        esrs_core::projection::CheckpointStore::load(&checkpoints, "fails_at")
            .await
            .expect("load"),
        Position::START
    );
    assert_eq!(runner.projection().applied.count(&store).await, 0);
}
