//! Idempotency keys: a key appends at most once, a repeat gets the original outcome, and a key
//! used for another request is refused.

use std::sync::Arc;

use super::{event, read_stream, unique_stream};
use crate::store::{AppendOutcome, AppendRequest};
use crate::{Error, EventStore, ExpectedVersion, IdempotencyKey};

checks! {
    /// The same idempotency key appends once; the repeat gets the original outcome, even with
    /// a stale expected version; the key used for another stream is an error.
    pub async fn idempotency_keys<S: EventStore>(store: S) {
        let stream = unique_stream("idem");
        let key = IdempotencyKey::new(format!("req-{}", uuid::Uuid::new_v4())).expect("valid key");
        let first = store
            .append(
                AppendRequest::new(
                    stream.clone(),
                    ExpectedVersion::NoStream,
                    vec![event("A", 1), event("B", 2)],
                )
                .idempotency_key(key.clone()),
            )
            .await
            .expect("first append succeeds");
        assert!(!first.deduplicated);

        let again = store
            .append(
                AppendRequest::new(
                    stream.clone(),
                    ExpectedVersion::NoStream,
                    vec![event("A", 1), event("B", 2)],
                )
                .idempotency_key(key.clone()),
            )
            .await
            .expect("a repeat is not an error");
        assert!(again.deduplicated);
        assert_eq!(
            (
                again.first_version,
                again.last_version,
                again.first_position,
                again.last_position
            ),
            (
                first.first_version,
                first.last_version,
                first.first_position,
                first.last_position
            )
        );
        assert_eq!(
            read_stream(&store, &stream).await.len(),
            2,
            "nothing appended twice"
        );

        let found = store
            .find_idempotency_key(&key)
            .await
            .expect("lookup succeeds")
            .expect("the key is known");
        assert_eq!(
            (found.outcome.stream.clone(), found.outcome.last_version),
            (stream.clone(), 2)
        );

        let other = unique_stream("idem-other");
        let err = store
            .append(
                AppendRequest::new(other.clone(), ExpectedVersion::Any, vec![event("C", 3)])
                    .idempotency_key(key.clone()),
            )
            .await
            .expect_err("a key reused for another stream is refused");
        match err {
            Error::IdempotencyKeyReused {
                key: k,
                original_stream,
                stream: s,
            } => {
                assert_eq!(
                    (k, original_stream, s),
                    (key.clone(), stream.clone(), other.clone())
                );
            }
            other => panic!("expected IdempotencyKeyReused, got {other:?}"),
        }
        assert!(read_stream(&store, &other).await.is_empty());

        let unknown =
            IdempotencyKey::new(format!("never-{}", uuid::Uuid::new_v4())).expect("valid key");
        assert!(
            store
                .find_idempotency_key(&unknown)
                .await
                .expect("lookup")
                .is_none()
        );
    }

    /// 20 concurrent retries of one request with one idempotency key: exactly one set of
    /// events, and every retry gets the original outcome.
    pub async fn idempotency_under_concurrent_retries<S: EventStore>(store: S) {
        const RETRIES: usize = 20;
        let store = Arc::new(store);
        let stream = unique_stream("idem-race");
        let key = IdempotencyKey::new(format!("req-{}", uuid::Uuid::new_v4())).expect("valid key");
        let barrier = Arc::new(tokio::sync::Barrier::new(RETRIES));
        let mut handles = Vec::new();
        for _ in 0..RETRIES {
            let (store, stream, key, barrier) =
                (store.clone(), stream.clone(), key.clone(), barrier.clone());
            handles.push(tokio::spawn(async move {
                barrier.wait().await;
                store
                    .append(
                        AppendRequest::new(
                            stream,
                            ExpectedVersion::NoStream,
                            vec![event("Paid", 1), event("Shipped", 2)],
                        )
                        .idempotency_key(key),
                    )
                    .await
            }));
        }
        let mut outcomes: Vec<AppendOutcome> = Vec::new();
        for h in handles {
            outcomes.push(
                h.await
                    .expect("task completes")
                    .expect("every retry succeeds"),
            );
        }
        assert_eq!(
            outcomes.iter().filter(|o| !o.deduplicated).count(),
            1,
            "exactly one append wrote"
        );
        for o in &outcomes {
            assert_eq!((o.first_version, o.last_version), (1, 2));
            assert_eq!(o.first_position, outcomes[0].first_position);
        }
        let events = read_stream(&*store, &stream).await;
        assert_eq!(
            events.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
            ["Paid", "Shipped"]
        );
    }

    /// The same key with a different request (other events, another expected version) is
    /// refused with [`Error::IdempotencyKeyMismatch`] and writes nothing; the same request still
    /// gets the original outcome; metadata is not part of the request.
    pub async fn idempotency_key_with_another_request<S: EventStore>(store: S) {
        let stream = unique_stream("idem-mismatch");
        let key = IdempotencyKey::new(format!("req-{}", uuid::Uuid::new_v4())).expect("valid key");
        let request = |expected, events| {
            AppendRequest::new(stream.clone(), expected, events).idempotency_key(key.clone())
        };
        let first = store
            .append(request(ExpectedVersion::NoStream, vec![event("A", 1)]))
            .await
            .expect("first append succeeds");
        for other in [
            request(ExpectedVersion::NoStream, vec![event("A", 2)]),
            request(
                ExpectedVersion::NoStream,
                vec![event("A", 1), event("B", 2)],
            ),
            request(ExpectedVersion::Exact(1), vec![event("A", 1)]),
            request(ExpectedVersion::Any, vec![event("A", 1)]),
        ] {
            match store.append(other.clone()).await {
                Err(Error::IdempotencyKeyMismatch { key: k, stream: s }) => {
                    assert_eq!((k, s), (key.clone(), stream.clone()));
                }
                result => panic!("expected IdempotencyKeyMismatch for {other:?}, got {result:?}"),
            }
        }
        assert_eq!(
            read_stream(&store, &stream).await.len(),
            1,
            "a refused request writes nothing"
        );
        let again = store
            .append(
                request(ExpectedVersion::NoStream, vec![event("A", 1)])
                    .metadata(crate::Metadata::new().with_actor("a retry")),
            )
            .await
            .expect("the same request is answered");
        assert!(again.deduplicated);
        assert_eq!(again.last_position, first.last_position);
    }
}
