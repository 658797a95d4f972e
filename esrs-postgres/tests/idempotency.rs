//! Idempotency keys on PostgreSQL: concurrent double clicks of a command whose repeat the
//! new state would refuse, keys from before request digests, and retention with its sweep.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{fresh_store, fresh_store_with};
use esrs_core::Error;
use esrs_core::conformance::{event, unique_stream};
use esrs_core::prelude::*;
use esrs_core::store::AppendRequest;
use esrs_postgres::{PgStore, sqlx};

#[derive(Event, Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct BookLent {
    to: String,
}

#[derive(Debug, PartialEq, thiserror::Error)]
enum LendingError {
    #[error("the book is already lent to {0}")]
    AlreadyLent(String),
}

#[derive(Debug, Default, Clone)]
struct Book {
    lent_to: Option<String>,
}

#[aggregate(name = "book")]
impl Book {
    #[apply]
    fn lent(&mut self, e: &BookLent) {
        self.lent_to = Some(e.to.clone());
    }

    fn lend(&self, to: &str) -> Result<BookLent, LendingError> {
        if let Some(reader) = &self.lent_to {
            return Err(LendingError::AlreadyLent(reader.clone()));
        }
        Ok(BookLent { to: to.to_owned() })
    }
}

/// 8 concurrent identical requests (one key), 10 rounds: every one gets the outcome of the
/// one that appended, none the refusal "already lent" that the new state would give.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_double_clicks_all_get_the_original_outcome() {
    const CLICKS: usize = 8;
    let store = fresh_store().await;
    let books = Arc::new(Repository::<Book, _>::new(store.store.clone()));
    for round in 0..10 {
        let book = StreamId::new(format!("moby-dick-{round}")).unwrap();
        let key = IdempotencyKey::new(format!("lend-{round}")).unwrap();
        let barrier = Arc::new(tokio::sync::Barrier::new(CLICKS));
        let tasks: Vec<_> = (0..CLICKS)
            .map(|_| {
                let (books, book, key, barrier) =
                    (books.clone(), book.clone(), key.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    books
                        .execute(&book, |b| b.lend("ada"))
                        .idempotency_key(key)
                        .await
                })
            })
            .collect();
        let mut written = 0;
        for task in tasks {
            let done = task
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}: a click got {e:?}"));
            written += usize::from(!done.outcome.deduplicated);
            assert_eq!(done.version(), 1);
            assert_eq!(done.state.lent_to.as_deref(), Some("ada"));
        }
        assert_eq!(written, 1, "round {round}: one click appended");
        assert_eq!(books.load(&book).await.unwrap().version(), 1);
    }
}

/// Rewrites the stored row of `key` (`assignment` is SQL), as time or an older release would
/// have left it.
async fn set_key_column(store: &PgStore, key: &IdempotencyKey, assignment: &str) {
    sqlx::query(&format!(
        "UPDATE {}.idempotency_keys SET {assignment} WHERE key = $1",
        store.schema()
    ))
    .bind(key.as_str())
    .execute(store.pool())
    .await
    .unwrap();
}

/// A key stored before request digests existed (NULL digest) still answers a repeat.
#[tokio::test]
async fn a_key_without_a_digest_matches_any_request_on_its_stream() {
    let store = fresh_store().await;
    let stream = unique_stream("legacy");
    let key = IdempotencyKey::new(format!("legacy-{}", uuid::Uuid::new_v4())).unwrap();
    let request = |n| {
        AppendRequest::new(stream.clone(), ExpectedVersion::Any, vec![event("A", n)])
            .idempotency_key(key.clone())
    };
    store.append(request(1)).await.unwrap();
    set_key_column(&store, &key, "request_digest = NULL").await;
    assert!(store.append(request(2)).await.unwrap().deduplicated);
}

/// Keys older than the retention are forgotten at once (before any sweep), a repeat is a
/// new request, and the sweep deletes only expired rows.
#[tokio::test]
async fn keys_expire_after_the_retention_and_the_sweep_reclaims_them() {
    let store = fresh_store_with(|o| o.idempotency_retention(Duration::from_secs(3600))).await;
    let stream = unique_stream("retention");
    let old = IdempotencyKey::new(format!("old-{}", uuid::Uuid::new_v4())).unwrap();
    let fresh = IdempotencyKey::new(format!("fresh-{}", uuid::Uuid::new_v4())).unwrap();
    let request = |key: &IdempotencyKey| {
        AppendRequest::new(stream.clone(), ExpectedVersion::Any, vec![event("A", 1)])
            .idempotency_key(key.clone())
    };
    store.append(request(&old)).await.unwrap();
    store.append(request(&fresh)).await.unwrap();
    // Age one key past the retention.
    set_key_column(&store, &old, "created_at = now() - interval '2 hours'").await;

    assert!(store.find_idempotency_key(&old).await.unwrap().is_none());
    assert!(store.find_idempotency_key(&fresh).await.unwrap().is_some());
    assert!(store.append(request(&fresh)).await.unwrap().deduplicated);
    let again = store.append(request(&old)).await.unwrap();
    assert!(
        !again.deduplicated,
        "a repeat after expiry is a new request"
    );
    assert_eq!(again.last_version, 3);
    assert!(store.append(request(&old)).await.unwrap().deduplicated);

    set_key_column(&store, &old, "created_at = now() - interval '2 hours'").await;
    assert_eq!(store.sweep_idempotency_keys().await.unwrap(), 1);
    assert_eq!(store.sweep_idempotency_keys().await.unwrap(), 0);
    let left: Vec<String> = sqlx::query_scalar(&format!(
        "SELECT key FROM {}.idempotency_keys",
        store.schema()
    ))
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(left, [fresh.as_str()]);
}

/// A key reused for another request is refused on PostgreSQL too, also when the original
/// request is still in flight in another transaction (the unique-key race).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_with_one_key_and_different_events() {
    let store = fresh_store().await;
    for round in 0..10 {
        let stream = unique_stream("mismatch-race");
        let key = IdempotencyKey::new(format!("k-{round}-{}", uuid::Uuid::new_v4())).unwrap();
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let tasks: Vec<_> = [1, 2]
            .into_iter()
            .map(|n| {
                let (store, stream, key, barrier) = (
                    store.store.clone(),
                    stream.clone(),
                    key.clone(),
                    barrier.clone(),
                );
                tokio::spawn(async move {
                    barrier.wait().await;
                    store
                        .append(
                            AppendRequest::new(stream, ExpectedVersion::Any, vec![event("A", n)])
                                .idempotency_key(key),
                        )
                        .await
                })
            })
            .collect();
        let mut appended = 0;
        let mut refused = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(outcome) => {
                    assert!(!outcome.deduplicated);
                    appended += 1;
                }
                Err(Error::IdempotencyKeyMismatch { .. }) => refused += 1,
                Err(other) => panic!("round {round}: unexpected {other:?}"),
            }
        }
        assert_eq!((appended, refused), (1, 1), "round {round}");
    }
}
