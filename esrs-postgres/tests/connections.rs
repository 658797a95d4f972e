//! The store's reuse of its connections (`PgStoreOptions::reuse_connections`): no pool ping
//! between operations, nothing broken by a cancelled operation, and the pool still there
//! for its other users.

mod common;

use std::time::Duration;

use common::fresh_store_with;
use common::proxy::Proxy;
use esrs_core::conformance::{event, unique_stream};
use esrs_core::store::AppendRequest;
use esrs_core::{EventStore, ExpectedVersion, Version};
use esrs_postgres::sqlx::PgPool;
use esrs_postgres::sqlx::postgres::PgPoolOptions;
use esrs_postgres::{PgStore, PgStoreOptions};
use futures_util::{StreamExt, TryStreamExt};

/// How many connections `store` has parked, as its `Debug` output says.
fn parked(store: &esrs_postgres::PgStore) -> usize {
    let debug = format!("{store:?}");
    let (_, rest) = debug
        .split_once("parked: ")
        .expect("the store shows its parked connections");
    rest.split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a count")
}

/// Client messages that are sqlx's pool ping: a `Sync` sent alone.
fn pings(messages: &str) -> usize {
    messages.split_inclusive('S').filter(|m| *m == "S").count()
}

/// Runs 20 commands (a version read and an append) through a proxy on a store built with
/// `reuse`, and returns the client's messages.
async fn commands_through_proxy(reuse: bool) -> String {
    let store = fresh_store_with(|o| o).await;
    let proxy = Proxy::to_test_server().await;
    let pool = proxy.pool(4).await;
    let through = PgStoreOptions::new()
        .schema(store.schema())
        .notifications(false)
        .reuse_connections(reuse)
        .build(pool)
        .expect("valid options");
    let stream = unique_stream("reuse");
    // Prepares the statements.
    through
        .append(AppendRequest::new(
            stream.clone(),
            ExpectedVersion::NoStream,
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
        .expect("warm-up of an append expecting a version the store has seen");
    through.stream_version(&stream).await.expect("warm-up");
    tokio::time::sleep(Duration::from_millis(20)).await;
    proxy.reset();
    for n in 0..20 {
        let version = through.stream_version(&stream).await.expect("version");
        through
            .append(AppendRequest::new(
                stream.clone(),
                ExpectedVersion::Exact(version),
                vec![event("E", n)],
            ))
            .await
            .expect("append");
    }
    // Lets the pool's pings of returned connections, if any, reach the proxy.
    tokio::time::sleep(Duration::from_millis(20)).await;
    proxy.messages()
}

/// Back-to-back operations run on the store's parked connection: 40 statements, no ping.
/// Without reuse, every operation's connection is pinged when it returns to the pool.
#[tokio::test]
async fn a_busy_store_sends_no_pings() {
    let reused = commands_through_proxy(true).await;
    assert_eq!(reused.matches('E').count(), 40, "{reused}");
    assert_eq!(
        reused.matches('P').count(),
        0,
        "one connection, prepared once: {reused}"
    );
    assert_eq!(pings(&reused), 0, "no ping with reuse: {reused}");

    // Meanwhile the pool opens more connections (a connection being pinged is not free),
    // which prepare the statements again.
    let pooled = commands_through_proxy(false).await;
    assert!(
        pings(&pooled) >= 40,
        "sqlx pings every connection returned to its pool: {pooled}"
    );
}

/// Operations cancelled at every point of their run (reads dropped midway, appends timed
/// out before, during and after their round trip) leave nothing behind: the store's later
/// operations all succeed and see exactly the events that were acknowledged or that the
/// stream now has.
#[tokio::test]
async fn cancelled_operations_leave_no_broken_connection() {
    let store = fresh_store_with(|o| o.max_connections(3).notifications(false)).await;
    let long = unique_stream("long");
    let events = (0..2_000).map(|n| event("E", n)).collect();
    store
        .append(AppendRequest::new(
            long.clone(),
            ExpectedVersion::NoStream,
            events,
        ))
        .await
        .expect("the long stream");

    // Reads dropped after a few rows, with most of the answer unread.
    for taken in [1, 10, 500] {
        let mut read = store.read_stream(&long, 1, Version::MAX);
        for _ in 0..taken {
            read.next().await.expect("a row").expect("an event");
        }
        drop(read);
        let all: Vec<_> = store
            .read_stream(&long, 1, Version::MAX)
            .try_collect()
            .await
            .expect("a full read after a dropped one");
        assert_eq!(all.len(), 2_000);
        assert_eq!(store.stream_version(&long).await.expect("version"), 2_000);
    }

    // Appends cancelled after 0 µs, 25 µs, …: some never start, some are cut mid-flight
    // (the server may still commit them), some complete. Each is followed by complete
    // operations that must succeed and see a consistent stream.
    let stream = unique_stream("cancelled");
    let mut acknowledged = Vec::new();
    for n in 0..120u64 {
        let version = store.stream_version(&stream).await.expect("version");
        let request = AppendRequest::new(
            stream.clone(),
            ExpectedVersion::Exact(version),
            (0..50).map(|i| event("E", n * 100 + i)).collect(),
        );
        let budget = Duration::from_micros(25 * (n % 40));
        if let Ok(Ok(outcome)) = tokio::time::timeout(budget, store.append(request)).await {
            acknowledged.push(outcome.first_version);
        }
        let read: Vec<_> = store
            .read_stream(&stream, 1, Version::MAX)
            .try_collect()
            .await
            .expect("a read after a cancel");
        assert_eq!(read.len() % 50, 0, "an append is all or nothing");
        assert!(
            read.iter().zip(1..).all(|(e, v)| e.version == v),
            "versions without gap"
        );
    }
    // Once the cut appends that the server still committed are in, every acknowledged
    // append is there.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let version = store.stream_version(&stream).await.expect("final version");
    assert_eq!(version % 50, 0);
    assert!(
        !acknowledged.is_empty(),
        "some appends completed within their budget"
    );
    assert!(acknowledged.iter().all(|first| first + 49 <= version));
}

/// A pool of `max_connections` and a store without notifications on it, over the schema of
/// `store`.
async fn small_store(store: &PgStore, max_connections: u32) -> (PgPool, PgStore) {
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(2))
        .connect_with(common::connect_options())
        .await
        .expect("a pool");
    let small = PgStoreOptions::new()
        .schema(store.schema())
        .notifications(false)
        .build(pool.clone())
        .expect("valid options");
    (pool, small)
}

/// Connections parked by the store go back to the pool within moments: another user of
/// the pool gets every connection, and closing the pool completes.
#[tokio::test]
async fn parked_connections_return_to_the_pool() {
    let store = fresh_store_with(|o| o.notifications(false)).await;
    let (pool, small) = small_store(&store, 3).await;
    // Two reads at once use two connections, which the store parks.
    let a = unique_stream("a");
    let b = unique_stream("b");
    for stream in [&a, &b] {
        small
            .append(AppendRequest::new(
                stream.clone(),
                ExpectedVersion::NoStream,
                vec![event("E", 1)],
            ))
            .await
            .expect("append");
    }
    let (left, right) = tokio::join!(
        small
            .read_stream(&a, 1, Version::MAX)
            .try_collect::<Vec<_>>(),
        small
            .read_stream(&b, 1, Version::MAX)
            .try_collect::<Vec<_>>(),
    );
    assert_eq!(left.expect("read a").len(), 1);
    assert_eq!(right.expect("read b").len(), 1);

    // Every connection of the pool, held at once by someone else.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(
            pool.acquire()
                .await
                .expect("the pool gives every connection"),
        );
    }
    drop(held);

    // The store works on, then the pool closes although the store is still alive.
    assert_eq!(small.stream_version(&a).await.expect("version"), 1);
    tokio::time::timeout(Duration::from_secs(2), pool.close())
        .await
        .expect("the pool closes within moments of the store's last operation");
    assert!(
        small.stream_version(&a).await.is_err(),
        "the pool is closed"
    );
}

/// A standby runner that retries a projection's lock does not open a connection per try; the
/// connection that gets the lock leaves the pool with it, and the pool goes on.
#[tokio::test]
async fn retrying_a_projection_lock_reuses_connections() {
    let store = fresh_store_with(|o| o.notifications(false)).await;
    let held = store
        .try_lock_projection("standby")
        .await
        .expect("lock")
        .expect("the first runner gets the lock");

    let proxy = Proxy::to_test_server().await;
    let pool = proxy.pool(2).await;
    let standby = PgStoreOptions::new()
        .schema(store.schema())
        .notifications(false)
        .build(pool.clone())
        .expect("valid options");
    for _ in 0..20 {
        assert!(
            standby
                .try_lock_projection("standby")
                .await
                .expect("try")
                .is_none(),
            "the lock is held"
        );
    }
    assert!(
        proxy.connections() <= 2,
        "20 tries used {} connections",
        proxy.connections()
    );

    held.release().await.expect("release");
    let lock = standby
        .try_lock_projection("standby")
        .await
        .expect("try")
        .expect("the standby gets the released lock");
    // The lock's connection left the pool: both of the pool's connections serve the store.
    let stream = unique_stream("after-lock");
    standby
        .append(AppendRequest::new(
            stream.clone(),
            ExpectedVersion::NoStream,
            vec![event("E", 1)],
        ))
        .await
        .expect("the store works on");
    let (a, b) = tokio::join!(pool.acquire(), pool.acquire());
    drop((a.expect("a pooled connection"), b.expect("another")));
    assert!(
        store
            .try_lock_projection("standby")
            .await
            .expect("try")
            .is_none(),
        "the standby holds the lock now"
    );
    lock.release().await.expect("release");
}

/// Closing the pool completes however many connections the store has parked, also while
/// the store is alive and idle.
#[tokio::test]
async fn closing_the_pool_completes_with_several_parked_connections() {
    let store = fresh_store_with(|o| o.notifications(false)).await;
    let (pool, small) = small_store(&store, 4).await;
    let streams: Vec<_> = (0..3).map(|_| unique_stream("parked")).collect();
    for stream in &streams {
        small
            .append(AppendRequest::new(
                stream.clone(),
                ExpectedVersion::NoStream,
                vec![event("E", 1)],
            ))
            .await
            .expect("append");
    }
    // Three reads open at once hold three connections; each parks its own when it ends.
    let mut reads: Vec<_> = streams
        .iter()
        .map(|stream| small.read_stream(stream, 1, Version::MAX))
        .collect();
    for read in &mut reads {
        read.try_next()
            .await
            .expect("read")
            .expect("the stream's event");
    }
    for read in &mut reads {
        assert!(read.try_next().await.expect("read").is_none());
    }
    drop(reads);
    assert!(
        parked(&small) >= 2,
        "several connections are parked: {small:?}"
    );
    tokio::time::timeout(Duration::from_secs(5), pool.close())
        .await
        .expect("the pool closes although the store parks several connections");
    assert!(pool.is_closed());
    let err = small
        .stream_version(&streams[0])
        .await
        .expect_err("the pool is closed");
    assert!(!err.is_retryable(), "{err:?}");
}

/// A busy store still hands each connection back to the pool now and then, so that the
/// pool's own policies apply to it: its `max_lifetime`, its `after_release` hook.
#[tokio::test]
async fn a_busy_store_keeps_to_the_pools_policies() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let store = fresh_store_with(|o| o.notifications(false)).await;
    let stream = unique_stream("busy");
    // One operation after another, for 3 s: the store never leaves a connection idle.
    let run = |pool: esrs_postgres::sqlx::PgPool| {
        let store = PgStoreOptions::new()
            .schema(store.schema())
            .notifications(false)
            .build(pool)
            .expect("valid options");
        let stream = stream.clone();
        async move {
            let started = std::time::Instant::now();
            let mut operations = 0_u32;
            while started.elapsed() < Duration::from_secs(3) {
                store.stream_version(&stream).await.expect("version");
                operations += 1;
            }
            assert!(operations > 100, "{operations} operations");
            store
        }
    };

    // A pool whose connections live 300 ms at most.
    let application = format!("esrs-lifetime-{}", store.schema());
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .test_before_acquire(false)
        .max_lifetime(Duration::from_millis(300))
        .connect_with(common::connect_options().application_name(&application))
        .await
        .expect("a pool");
    let busy = run(pool).await;
    let oldest: Option<f64> = esrs_postgres::sqlx::query_scalar(
        "SELECT max(extract(epoch FROM now() - backend_start))::float8 \
         FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(&application)
    .fetch_one(store.pool())
    .await
    .expect("activity");
    let oldest = oldest.expect("the store's connection is open");
    assert!(
        oldest < 2.0,
        "a connection of a pool whose max_lifetime is 300 ms is {oldest:.2} s old"
    );
    drop(busy);

    // A pool with an `after_release` hook (and connections that live 1 s at most, so that
    // the store hands them back at least every half second).
    let released = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&released);
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .test_before_acquire(false)
        .max_lifetime(Duration::from_secs(1))
        .after_release(move |_, _| {
            let counter = Arc::clone(&counter);
            Box::pin(async move {
                counter.fetch_add(1, Ordering::Relaxed);
                Ok(true)
            })
        })
        .connect_with(common::connect_options())
        .await
        .expect("a pool");
    let busy = run(pool).await;
    assert!(
        released.load(Ordering::Relaxed) >= 1,
        "the pool's after_release hook never ran in 3 s of operations"
    );
    drop(busy);
}

/// A store dropped outside a runtime gives its parked connections back: a shared pool
/// keeps its whole capacity, with or without a minimum of connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_dropped_outside_a_runtime_leaves_the_pool_whole() {
    let store = fresh_store_with(|o| o.notifications(false)).await;
    for min in [0, 1] {
        let pool = PgPoolOptions::new()
            .max_connections(3)
            .min_connections(min)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(common::connect_options())
            .await
            .expect("a pool");
        let shared = PgStoreOptions::new()
            .schema(store.schema())
            .notifications(false)
            .build(pool.clone())
            .expect("valid options");
        let (a, b) = (unique_stream("a"), unique_stream("b"));
        // Two reads at once park two connections (tried again on a machine so loaded that
        // they ran one after the other).
        for _ in 0..20 {
            let (left, right) = tokio::join!(
                shared
                    .read_stream(&a, 1, Version::MAX)
                    .try_collect::<Vec<_>>(),
                shared
                    .read_stream(&b, 1, Version::MAX)
                    .try_collect::<Vec<_>>(),
            );
            left.expect("read a");
            right.expect("read b");
            if parked(&shared) >= 2 {
                break;
            }
        }
        assert!(parked(&shared) >= 1, "{shared:?}");
        std::thread::spawn(move || drop(shared))
            .join()
            .expect("the store drops outside a runtime");
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(
                pool.acquire()
                    .await
                    .unwrap_or_else(|e| panic!("min {min}: the pool lost capacity: {e}")),
            );
        }
        drop(held);
        pool.close().await;
    }
}
