//! The conformance suite every [`EventStore`] passes.
//!
//! Written once, generic over the store, and run on [`InMemoryStore`](crate::InMemoryStore)
//! and on the PostgreSQL store. A store implementation runs it with
//! [`store_conformance_tests!`](crate::store_conformance_tests), giving an expression that
//! makes a fresh, empty store with the default payload limit:
//!
//! ```ignore
//! esrs_core::store_conformance_tests!(async { esrs_core::InMemoryStore::new() });
//! ```
//!
//! Each check is also a public function, for stores that need their own test set-up.

#![allow(missing_docs, clippy::missing_panics_doc)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures_util::TryStreamExt;

use crate::store::{
    AppendOutcome, AppendRequest, FoldEvent, FoldItem, NewEvent, Payload, Snapshot, SnapshotKey,
};
use crate::{
    Error, EventStore, ExpectedVersion, IdempotencyKey, Metadata, Position, RecordedEvent,
    StreamId, Version,
};

/// A JSON payload from a `serde_json::Value`.
pub fn payload(value: serde_json::Value) -> Payload {
    serde_json::value::to_raw_value(&value).expect("a JSON value encodes")
}

/// A test event named `name` with payload `{"n": n}`.
pub fn event(name: &'static str, n: u64) -> NewEvent {
    NewEvent::new(name, 1, payload(serde_json::json!({ "n": n })))
}

/// A stream id unique to this run.
pub fn unique_stream(prefix: &str) -> StreamId {
    StreamId::new(format!("{prefix}-{}", uuid::Uuid::new_v4())).expect("valid stream id")
}

async fn read_stream<S: EventStore>(store: &S, stream: &StreamId) -> Vec<RecordedEvent> {
    store
        .read_stream(stream, 1, Version::MAX)
        .try_collect()
        .await
        .expect("read_stream succeeds")
}

async fn read_all<S: EventStore>(store: &S, after: Position) -> Vec<RecordedEvent> {
    store
        .read_all(after)
        .try_collect()
        .await
        .expect("read_all succeeds")
}

fn n_of(e: &RecordedEvent) -> u64 {
    let v: serde_json::Value = serde_json::from_str(e.payload()).expect("payload is JSON");
    v["n"].as_u64().expect("payload has n")
}

/// Appended events come back in order, with versions 1, 2, 3 …, byte-exact payloads and
/// their metadata.
pub async fn append_and_read_in_order<S: EventStore>(store: S) {
    let stream = unique_stream("order");
    let metadata = Metadata::new()
        .with_correlation_id(uuid::Uuid::new_v4())
        .with_causation_id(uuid::Uuid::new_v4())
        .with_actor("alice")
        .with("ip", "127.0.0.1")
        .with("nested", serde_json::json!({ "a": [1, 2, 3] }));
    let before = chrono::Utc::now() - chrono::Duration::seconds(5);
    let outcome = store
        .append(
            AppendRequest::new(
                stream.clone(),
                ExpectedVersion::NoStream,
                vec![event("A", 1), event("B", 2), event("C", 3)],
            )
            .metadata(metadata.clone()),
        )
        .await
        .expect("append succeeds");
    assert_eq!(outcome.stream, stream);
    assert_eq!((outcome.first_version, outcome.last_version), (1, 3));
    assert_eq!(outcome.len(), 3);
    assert!(!outcome.deduplicated);
    let first = outcome.first_position.expect("a first position");
    let last = outcome.last_position.expect("a last position");
    assert!(first < last);

    let outcome = store
        .append(AppendRequest::new(
            stream.clone(),
            ExpectedVersion::Exact(3),
            vec![event("D", 4)],
        ))
        .await
        .expect("second append succeeds");
    assert_eq!((outcome.first_version, outcome.last_version), (4, 4));

    let events = read_stream(&store, &stream).await;
    assert_eq!(events.len(), 4);
    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["A", "B", "C", "D"]);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.version, i as u64 + 1);
        assert_eq!(e.stream, stream);
        assert_eq!(e.schema_version, 1);
        assert_eq!(n_of(e), i as u64 + 1);
        assert!(
            e.recorded_at >= before
                && e.recorded_at <= chrono::Utc::now() + chrono::Duration::seconds(5)
        );
    }
    assert_eq!(events[0].payload(), r#"{"n":1}"#);
    assert_eq!(events[0].metadata, metadata);
    assert_eq!(events[3].metadata, Metadata::default());
    assert_eq!(events[0].position, first);
    assert_eq!(events[2].position, last);
    assert!(events.windows(2).all(|w| w[0].position < w[1].position));
    assert_eq!(store.stream_version(&stream).await.expect("version"), 4);
}

/// `read_stream` honours its `from..=to` range; a missing stream is empty at version 0.
pub async fn read_stream_ranges<S: EventStore>(store: S) {
    let stream = unique_stream("range");
    let events: Vec<_> = (1..=10).map(|n| event("E", n)).collect();
    store
        .append(AppendRequest::new(
            stream.clone(),
            ExpectedVersion::Any,
            events,
        ))
        .await
        .expect("append succeeds");
    let part: Vec<RecordedEvent> = store
        .read_stream(&stream, 4, 6)
        .try_collect()
        .await
        .expect("read succeeds");
    assert_eq!(
        part.iter().map(|e| e.version).collect::<Vec<_>>(),
        [4, 5, 6]
    );
    let tail: Vec<RecordedEvent> = store
        .read_stream(&stream, 9, Version::MAX)
        .try_collect()
        .await
        .expect("read succeeds");
    assert_eq!(tail.iter().map(|e| e.version).collect::<Vec<_>>(), [9, 10]);
    let none: Vec<RecordedEvent> = store
        .read_stream(&stream, 11, Version::MAX)
        .try_collect()
        .await
        .expect("read succeeds");
    assert!(none.is_empty());

    let missing = unique_stream("missing");
    assert!(read_stream(&store, &missing).await.is_empty());
    assert_eq!(store.stream_version(&missing).await.expect("version"), 0);
}

/// A long stream is read completely and in order (readers that page must not lose events).
pub async fn long_stream_reads_completely<S: EventStore>(store: S) {
    let stream = unique_stream("long");
    for batch in 0..5u64 {
        let events: Vec<_> = (0..300).map(|i| event("E", batch * 300 + i + 1)).collect();
        store
            .append(AppendRequest::new(
                stream.clone(),
                ExpectedVersion::Exact(batch * 300),
                events,
            ))
            .await
            .expect("append succeeds");
    }
    let events = read_stream(&store, &stream).await;
    assert_eq!(events.len(), 1500);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.version, i as u64 + 1);
        assert_eq!(n_of(e), i as u64 + 1);
    }
}

/// A stale expected version is a typed conflict that names the actual version, and
/// writes nothing.
pub async fn expected_version_conflicts<S: EventStore>(store: S) {
    let stream = unique_stream("conflict");
    store
        .append(AppendRequest::new(
            stream.clone(),
            ExpectedVersion::Exact(0),
            vec![event("A", 1)],
        ))
        .await
        .expect("Exact(0) on a new stream succeeds");

    let err = store
        .append(AppendRequest::new(
            stream.clone(),
            ExpectedVersion::NoStream,
            vec![event("B", 2)],
        ))
        .await
        .expect_err("NoStream on an existing stream conflicts");
    let conflict = err.as_conflict().expect("a conflict error");
    assert_eq!(
        (conflict.expected, conflict.actual),
        (ExpectedVersion::NoStream, 1)
    );
    assert_eq!(conflict.stream, stream);

    for stale in [0, 2, 7] {
        let err = store
            .append(AppendRequest::new(
                stream.clone(),
                ExpectedVersion::Exact(stale),
                vec![event("B", 2)],
            ))
            .await
            .expect_err("a stale version conflicts");
        match err {
            Error::Conflict(c) => {
                assert_eq!(c.expected, ExpectedVersion::Exact(stale));
                assert_eq!(c.actual, 1);
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
    assert_eq!(read_stream(&store, &stream).await.len(), 1);

    store
        .append(AppendRequest::new(
            stream.clone(),
            ExpectedVersion::Any,
            vec![event("C", 3)],
        ))
        .await
        .expect("Any appends");
    let versions: Vec<_> = read_stream(&store, &stream)
        .await
        .iter()
        .map(|e| e.version)
        .collect();
    assert_eq!(versions, [1, 2]);
}

/// 16 tasks race on one stream, all expecting the same version, round after round: exactly
/// one wins each round, the others get the conflict, and the stream has no gap and no
/// duplicate.
pub async fn concurrent_writers_one_winner_per_version<S: EventStore>(store: S) {
    const TASKS: u64 = 16;
    const ROUNDS: u64 = 10;
    let store = Arc::new(store);
    let stream = unique_stream("race");
    let barrier = Arc::new(tokio::sync::Barrier::new(TASKS as usize));
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let store = store.clone();
        let stream = stream.clone();
        let barrier = barrier.clone();
        handles.push(tokio::spawn(async move {
            let mut wins = Vec::new();
            let mut conflicts = 0;
            for round in 0..ROUNDS {
                barrier.wait().await;
                let request = AppendRequest::new(
                    stream.clone(),
                    ExpectedVersion::Exact(round),
                    vec![event("Won", task)],
                );
                match store.append(request).await {
                    Ok(outcome) => {
                        assert_eq!(outcome.last_version, round + 1);
                        wins.push(round + 1);
                    }
                    Err(Error::Conflict(c)) => {
                        assert_eq!(c.expected, ExpectedVersion::Exact(round));
                        conflicts += 1;
                    }
                    Err(other) => panic!(
                        "unexpected error: {}",
                        crate::error::ErrorChain::new(&other)
                    ),
                }
                barrier.wait().await;
            }
            (task, wins, conflicts)
        }));
    }
    let mut winner_of = BTreeMap::new();
    let mut total_conflicts = 0;
    for h in handles {
        let (task, wins, conflicts) = h.await.expect("task completes");
        total_conflicts += conflicts;
        for v in wins {
            assert!(
                winner_of.insert(v, task).is_none(),
                "two winners for version {v}"
            );
        }
    }
    assert_eq!(winner_of.len() as u64, ROUNDS, "one winner per round");
    assert_eq!(
        total_conflicts,
        ROUNDS * (TASKS - 1),
        "every loser got a conflict"
    );
    let events = read_stream(&*store, &stream).await;
    assert_eq!(events.len() as u64, ROUNDS);
    for e in &events {
        assert_eq!(
            winner_of[&e.version],
            n_of(e),
            "the stored event is the winner's"
        );
    }
}

/// 16 tasks append with reload-and-retry to a set of streams: every acknowledged append is
/// present, exactly once, and each stream's versions are 1..n.
pub async fn concurrent_writers_many_streams<S: EventStore>(
    store: S,
    streams: usize,
    appends_per_task: u64,
) {
    const TASKS: u64 = 16;
    let store = Arc::new(store);
    let ids: Arc<Vec<StreamId>> = Arc::new((0..streams).map(|_| unique_stream("many")).collect());
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let store = store.clone();
        let ids = ids.clone();
        handles.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut conflicts = 0u64;
            for i in 0..appends_per_task {
                let stream = &ids[((task * 7919 + i * 104_729) % ids.len() as u64) as usize];
                let tag = task * 1_000_000 + i;
                loop {
                    let version = store.stream_version(stream).await.expect("version");
                    let request = AppendRequest::new(
                        stream.clone(),
                        ExpectedVersion::Exact(version),
                        vec![event("Tagged", tag)],
                    );
                    match store.append(request).await {
                        Ok(outcome) => {
                            acked.push((stream.clone(), outcome.last_version, tag));
                            break;
                        }
                        Err(Error::Conflict(_)) => conflicts += 1,
                        Err(other) => panic!(
                            "unexpected error: {}",
                            crate::error::ErrorChain::new(&other)
                        ),
                    }
                }
            }
            (acked, conflicts)
        }));
    }
    let mut acked = Vec::new();
    for h in handles {
        let (a, _conflicts) = h.await.expect("task completes");
        acked.extend(a);
    }
    assert_eq!(acked.len() as u64, TASKS * appends_per_task);
    let mut stored: HashMap<(StreamId, Version), u64> = HashMap::new();
    let mut total = 0;
    for id in ids.iter() {
        let events = read_stream(&*store, id).await;
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.version, i as u64 + 1, "no gap and no duplicate in {id}");
            stored.insert((id.clone(), e.version), n_of(e));
        }
        total += events.len();
    }
    assert_eq!(
        total,
        acked.len(),
        "exactly the acknowledged events are stored"
    );
    for (stream, version, tag) in acked {
        assert_eq!(
            stored.get(&(stream, version)),
            Some(&tag),
            "acknowledged append is present"
        );
    }
}

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

/// Metadata that a store cannot keep (a NUL character anywhere, or over
/// [`Metadata::MAX_BYTES`](crate::Metadata::MAX_BYTES)) is refused with
/// [`Error::InvalidMetadata`] by every store, and nothing is written.
pub async fn invalid_metadata_refused<S: EventStore>(store: S) {
    let stream = unique_stream("metadata");
    let refused = [
        crate::Metadata::new().with_actor("a\0b"),
        crate::Metadata::new().with("note", "nul \0 inside"),
        crate::Metadata::new().with("nested", serde_json::json!({ "list": ["ok", "\0"] })),
        crate::Metadata::new().with("key\0", 1),
        crate::Metadata::new().with("blob", "x".repeat(crate::Metadata::MAX_BYTES)),
    ];
    for metadata in refused {
        let err = store
            .append(
                AppendRequest::new(stream.clone(), ExpectedVersion::Any, vec![event("A", 1)])
                    .metadata(metadata.clone()),
            )
            .await
            .expect_err("invalid metadata is refused");
        assert!(
            matches!(&err, Error::InvalidMetadata { stream: s, .. } if *s == stream),
            "expected InvalidMetadata for {metadata:?}, got {err:?}"
        );
    }
    assert!(read_stream(&store, &stream).await.is_empty());
    // Other control characters are kept as they are.
    let odd = crate::Metadata::new()
        .with_actor("tab\there, line\nbreak, \u{7f}")
        .with("note", "\u{1}");
    store
        .append(
            AppendRequest::new(stream.clone(), ExpectedVersion::Any, vec![event("A", 1)])
                .metadata(odd.clone()),
        )
        .await
        .expect("control characters other than NUL are kept");
    assert_eq!(read_stream(&store, &stream).await[0].metadata, odd);
}

/// A batch is all or nothing: an oversized event or a conflict anywhere in it writes
/// nothing.
pub async fn batch_atomicity<S: EventStore>(store: S) {
    let stream = unique_stream("batch");
    let big = "x".repeat(crate::store::DEFAULT_MAX_PAYLOAD_BYTES + 1);
    let batch = vec![
        event("A", 1),
        event("B", 2),
        NewEvent::new("Huge", 1, payload(serde_json::json!({ "blob": big }))),
        event("D", 4),
    ];
    let err = store
        .append(AppendRequest::new(
            stream.clone(),
            ExpectedVersion::Any,
            batch,
        ))
        .await
        .expect_err("an oversized event is refused");
    assert!(
        matches!(err, Error::PayloadTooLarge { name: "Huge", .. }),
        "got {err:?}"
    );
    assert!(
        read_stream(&store, &stream).await.is_empty(),
        "nothing of the batch is written"
    );

    store
        .append(AppendRequest::new(
            stream.clone(),
            ExpectedVersion::NoStream,
            vec![event("A", 1)],
        ))
        .await
        .expect("append succeeds");
    let err = store
        .append(AppendRequest::new(
            stream.clone(),
            ExpectedVersion::NoStream,
            (2..=100).map(|n| event("X", n)).collect(),
        ))
        .await
        .expect_err("a conflicting batch is refused");
    assert!(err.as_conflict().is_some());
    let batch: Vec<_> = (2..=1000).map(|n| event("Y", n)).collect();
    let outcome = store
        .append(AppendRequest::new(
            stream.clone(),
            ExpectedVersion::Exact(1),
            batch,
        ))
        .await
        .expect("a large batch appends");
    assert_eq!((outcome.first_version, outcome.last_version), (2, 1000));
    let events = read_stream(&store, &stream).await;
    assert_eq!(events.len(), 1000);
    assert!(events.iter().skip(1).all(|e| e.name == "Y"));
}

/// Payloads over the limit are refused with an error that says what to do; payloads at the
/// limit are stored.
pub async fn oversized_payload_refused<S: EventStore>(store: S) {
    let stream = unique_stream("size");
    // `{"b":"…"}` is 8 bytes around the text.
    let exact = "y".repeat(crate::store::DEFAULT_MAX_PAYLOAD_BYTES - 8);
    store
        .append(AppendRequest::new(
            stream.clone(),
            ExpectedVersion::Any,
            vec![NewEvent::new(
                "AtLimit",
                1,
                payload(serde_json::json!({ "b": exact })),
            )],
        ))
        .await
        .expect("a payload at the limit is stored");
    let over = "y".repeat(crate::store::DEFAULT_MAX_PAYLOAD_BYTES - 7);
    let err = store
        .append(AppendRequest::new(
            stream.clone(),
            ExpectedVersion::Any,
            vec![NewEvent::new(
                "OverLimit",
                1,
                payload(serde_json::json!({ "b": over })),
            )],
        ))
        .await
        .expect_err("one byte over is refused");
    match &err {
        Error::PayloadTooLarge { size, limit, .. } => {
            assert_eq!(
                (*size, *limit),
                (
                    crate::store::DEFAULT_MAX_PAYLOAD_BYTES + 1,
                    crate::store::DEFAULT_MAX_PAYLOAD_BYTES
                )
            );
        }
        other => panic!("expected PayloadTooLarge, got {other:?}"),
    }
    assert!(
        err.to_string().contains("store the blob elsewhere"),
        "{}",
        crate::error::ErrorChain::new(&err)
    );
    assert_eq!(store.stream_version(&stream).await.expect("version"), 1);
}

/// The global log holds every event once, in increasing position order; reading after a
/// position resumes right after it; the read ends when caught up.
pub async fn global_log_order<S: EventStore>(store: S) {
    let start = read_all(&store, Position::START)
        .await
        .last()
        .map_or(Position::START, |e| e.position);
    let a = unique_stream("log-a");
    let b = unique_stream("log-b");
    let mut expected = Vec::new();
    for round in 0..5u64 {
        for (stream, name) in [(&a, "A"), (&b, "B")] {
            let events = vec![event(name, round * 2), event(name, round * 2 + 1)];
            store
                .append(AppendRequest::new(
                    stream.clone(),
                    ExpectedVersion::Any,
                    events,
                ))
                .await
                .expect("append succeeds");
            expected.push((stream.clone(), round * 2));
            expected.push((stream.clone(), round * 2 + 1));
        }
    }
    // A store may hold events back while older writes (of anyone) are still in flight, so
    // the reader follows the log from where it stopped until ours are all visible.
    let mut log = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let after = log.last().map_or(start, |e: &RecordedEvent| e.position);
        log.extend(read_all(&store, after).await);
        let seen = log
            .iter()
            .filter(|e| e.stream == a || e.stream == b)
            .count();
        if seen >= 20 || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let ours: Vec<_> = log
        .iter()
        .filter(|e| e.stream == a || e.stream == b)
        .collect();
    assert_eq!(ours.len(), 20);
    assert!(
        log.windows(2).all(|w| w[0].position < w[1].position),
        "positions increase"
    );
    let got: Vec<_> = ours.iter().map(|e| (e.stream.clone(), n_of(e))).collect();
    assert_eq!(got, expected, "the log is in append order");

    let middle = ours[9].position;
    let resumed = read_all(&store, middle).await;
    let resumed: Vec<_> = resumed
        .iter()
        .filter(|e| e.stream == a || e.stream == b)
        .collect();
    assert_eq!(resumed.len(), 10);
    assert_eq!(resumed[0].position, ours[10].position);

    let end = ours[19].position;
    assert!(
        read_all(&store, end)
            .await
            .iter()
            .all(|e| e.stream != a && e.stream != b),
        "nothing of ours after the last position"
    );
}

/// Snapshots: the latest one with the asked key is returned; another key is ignored; an
/// older one never replaces a newer; `read_for_fold` with the key gives the snapshot then
/// the tail.
pub async fn snapshots<S: EventStore>(store: S) {
    let stream = unique_stream("snap");
    let key = SnapshotKey::new(1, 0xfeed);
    let other_key = SnapshotKey::new(2, 0xfeed);
    let events: Vec<_> = (1..=6).map(|n| event("E", n)).collect();
    store
        .append(AppendRequest::new(
            stream.clone(),
            ExpectedVersion::Any,
            events,
        ))
        .await
        .expect("append succeeds");
    assert!(
        store
            .load_snapshot(&stream, key)
            .await
            .expect("load")
            .is_none()
    );

    let items: Vec<FoldItem> = store
        .read_for_fold(&stream, 1, Version::MAX, Some(key))
        .try_collect()
        .await
        .expect("read succeeds");
    assert_eq!(items.len(), 6);
    assert!(items.iter().all(|i| matches!(i, FoldItem::Event(_))));

    store
        .save_snapshot(Snapshot::new(
            stream.clone(),
            4,
            key,
            payload(serde_json::json!({ "sum": 10 })),
        ))
        .await
        .expect("save succeeds");
    store
        .save_snapshot(Snapshot::new(
            stream.clone(),
            2,
            key,
            payload(serde_json::json!({ "sum": 3 })),
        ))
        .await
        .expect("save of an older snapshot succeeds");
    let loaded = store
        .load_snapshot(&stream, key)
        .await
        .expect("load")
        .expect("a snapshot");
    assert_eq!((loaded.version, loaded.payload.get()), (4, r#"{"sum":10}"#));
    assert!(
        store
            .load_snapshot(&stream, other_key)
            .await
            .expect("load")
            .is_none()
    );

    let items: Vec<FoldItem> = store
        .read_for_fold(&stream, 1, Version::MAX, Some(key))
        .try_collect()
        .await
        .expect("read succeeds");
    match &items[..] {
        [
            FoldItem::Snapshot(s),
            FoldItem::Event(e5),
            FoldItem::Event(e6),
        ] => {
            assert_eq!((s.version, e5.version, e6.version), (4, 5, 6));
        }
        other => panic!("expected a snapshot and two events, got {other:?}"),
    }
    let items: Vec<FoldItem> = store
        .read_for_fold(&stream, 1, Version::MAX, Some(other_key))
        .try_collect()
        .await
        .expect("read succeeds");
    assert_eq!(items.len(), 6, "a snapshot of another key is not used");
}

/// What a fold sees of an event: version, name, event version, payload text.
type FoldView = (Version, String, u32, String);

fn fold_view_of_recorded(e: &RecordedEvent) -> FoldView {
    (
        e.version,
        e.name.clone(),
        e.schema_version,
        e.payload().to_owned(),
    )
}

fn fold_view(e: &FoldEvent) -> FoldView {
    (
        e.version,
        e.name.clone(),
        e.schema_version,
        e.payload.to_string(),
    )
}

/// A snapshot as (version, payload text), or an event as a fold sees it.
#[derive(Debug, PartialEq)]
enum ItemView {
    Snapshot(Version, String),
    Event(FoldView),
}

fn item_view(item: &FoldItem) -> ItemView {
    match item {
        FoldItem::Snapshot(s) => ItemView::Snapshot(s.version, s.payload.get().to_owned()),
        FoldItem::Event(e) => ItemView::Event(fold_view(e)),
    }
}

/// `read_for_fold` of `from..=to` with `key`, checked against what it must equal: the
/// snapshot of `key` (from `load_snapshot`) if its version lies in `from..=to`, then the
/// events after it (from `read_stream`).
async fn compare_snapshot_reads<S: EventStore>(
    store: &S,
    stream: &StreamId,
    (from, to): (Version, Version),
    key: SnapshotKey,
) -> Vec<ItemView> {
    let snapshot = store
        .load_snapshot(stream, key)
        .await
        .expect("load_snapshot succeeds")
        .filter(|s| (from..=to).contains(&s.version));
    let events_from = snapshot.as_ref().map_or(from, |s| s.version + 1);
    let events: Vec<RecordedEvent> = store
        .read_stream(stream, events_from, to)
        .try_collect()
        .await
        .expect("read_stream succeeds");
    let expected: Vec<ItemView> = snapshot
        .iter()
        .map(|s| ItemView::Snapshot(s.version, s.payload.get().to_owned()))
        .chain(
            events
                .iter()
                .map(|e| ItemView::Event(fold_view_of_recorded(e))),
        )
        .collect();
    let narrow: Vec<FoldItem> = store
        .read_for_fold(stream, from, to, Some(key))
        .try_collect()
        .await
        .expect("read_for_fold succeeds");
    let narrow: Vec<ItemView> = narrow.iter().map(item_view).collect();
    assert_eq!(
        narrow, expected,
        "the fold read of {from}..={to} with a snapshot matches the snapshot and the full read"
    );
    narrow
}

/// Only the events of a fold read.
fn fold_events(items: Vec<FoldItem>) -> Vec<FoldEvent> {
    items
        .into_iter()
        .map(|item| match item {
            FoldItem::Event(e) => e,
            FoldItem::Snapshot(s) => panic!("a read without a snapshot key gave {s:?}"),
        })
        .collect()
}

/// The read for a fold (`read_for_fold`) gives exactly the versions, names, schema versions
/// and payloads of the full read, for every range, with and without a snapshot.
pub async fn fold_reads_match_full_reads<S: EventStore>(store: S) {
    let stream = unique_stream("fold");
    let events: Vec<_> = (1..=8u64)
        .map(|n| {
            let name = if n % 3 == 0 { "Other" } else { "E" };
            let version = if n % 2 == 0 { 2 } else { 1 };
            NewEvent::new(
                name,
                version,
                payload(serde_json::json!({ "n": n, "text": format!("é \"{n}\"") })),
            )
        })
        .collect();
    store
        .append(AppendRequest::new(
            stream.clone(),
            ExpectedVersion::NoStream,
            events,
        ))
        .await
        .expect("append succeeds");
    // Another stream's events never show up in this one's reads.
    store
        .append(AppendRequest::new(
            unique_stream("fold-other"),
            ExpectedVersion::Any,
            vec![event("E", 99)],
        ))
        .await
        .expect("append succeeds");

    let ranges: [(Version, Version, usize); 9] = [
        (1, Version::MAX, 8),
        (0, Version::MAX, 8),
        (3, 5, 3),
        (6, 6, 1),
        (5, 4, 0),
        (7, Version::MAX, 2),
        (2, 100, 7),
        (9, Version::MAX, 0),
        (1, 0, 0),
    ];
    for (from, to, expected) in ranges {
        let full: Vec<RecordedEvent> = store
            .read_stream(&stream, from, to)
            .try_collect()
            .await
            .expect("read_stream succeeds");
        let narrow = fold_events(
            store
                .read_for_fold(&stream, from, to, None)
                .try_collect()
                .await
                .expect("read_for_fold succeeds"),
        );
        let full: Vec<FoldView> = full.iter().map(fold_view_of_recorded).collect();
        let narrow: Vec<FoldView> = narrow.iter().map(fold_view).collect();
        assert_eq!(
            narrow, full,
            "the fold read of {from}..={to} matches the full read"
        );
        assert_eq!(
            narrow.len(),
            expected,
            "{from}..={to} has {expected} events"
        );
    }
    let missing: Vec<FoldItem> = store
        .read_for_fold(&unique_stream("fold-missing"), 1, Version::MAX, None)
        .try_collect()
        .await
        .expect("read_for_fold succeeds");
    assert!(missing.is_empty(), "a stream that does not exist is empty");

    let key = SnapshotKey::new(3, 0xf01d);
    let other_key = SnapshotKey::new(3, 0xf01e);
    let items = compare_snapshot_reads(&store, &stream, ALL, key).await;
    assert_eq!(items.len(), 8, "without a snapshot, the whole stream");
    assert!(items.iter().all(|i| matches!(i, ItemView::Event(_))));

    store
        .save_snapshot(Snapshot::new(
            stream.clone(),
            5,
            key,
            payload(serde_json::json!({ "sum": 15 })),
        ))
        .await
        .expect("save succeeds");
    let items = compare_snapshot_reads(&store, &stream, ALL, key).await;
    match &items[..] {
        [
            ItemView::Snapshot(5, _),
            ItemView::Event(e6),
            ItemView::Event(e7),
            ItemView::Event(e8),
        ] => assert_eq!((e6.0, e7.0, e8.0), (6, 7, 8)),
        other => panic!("expected a snapshot and three events, got {other:?}"),
    }
    let items = compare_snapshot_reads(&store, &stream, ALL, other_key).await;
    assert_eq!(items.len(), 8, "a snapshot of another key is not used");

    // A snapshot at the head: the snapshot alone.
    store
        .save_snapshot(Snapshot::new(
            stream.clone(),
            8,
            key,
            payload(serde_json::json!({ "sum": 36 })),
        ))
        .await
        .expect("save succeeds");
    let items = compare_snapshot_reads(&store, &stream, ALL, key).await;
    assert!(
        matches!(&items[..], [ItemView::Snapshot(8, _)]),
        "a snapshot at the head and no event, got {items:?}"
    );
    let missing = compare_snapshot_reads(&store, &unique_stream("fold-missing"), ALL, key).await;
    assert!(missing.is_empty(), "a stream that does not exist is empty");

    // A snapshot is used only inside the range asked for.
    store
        .save_snapshot(Snapshot::new(
            stream.clone(),
            4,
            other_key,
            payload(serde_json::json!({ "sum": 10 })),
        ))
        .await
        .expect("save succeeds");
    for (range, snapshot, events) in [
        ((1, 3), None, 3),
        ((1, 4), Some(4), 0),
        ((2, 6), Some(4), 2),
        ((4, 4), Some(4), 0),
        ((5, Version::MAX), None, 4),
        ((5, 4), None, 0),
    ] {
        let items = compare_snapshot_reads(&store, &stream, range, other_key).await;
        let got = match items.first() {
            Some(ItemView::Snapshot(v, _)) => Some(*v),
            _ => None,
        };
        assert_eq!(
            (got, items.len() - usize::from(got.is_some())),
            (snapshot, events),
            "the read of {range:?}"
        );
    }
}

/// Every version of a stream, for a fold read.
const ALL: (Version, Version) = (1, Version::MAX);

/// Stream ids, names and metadata with quotes, backslashes, SQL, unicode and the maximum
/// length are stored and read back byte-exact.
pub async fn hostile_input_round_trips<S: EventStore>(store: S) {
    let odd = [
        "quote ' double \" back \\ slash".to_owned(),
        "'; DROP TABLE events; --".to_owned(),
        "ünïcødé 🦀 日本語 \u{200b}".to_owned(),
        format!(
            "{}{}",
            uuid::Uuid::new_v4(),
            "é".repeat((crate::StreamId::MAX_LEN - 36) / 2)
        ),
    ];
    for (i, text) in odd.iter().enumerate() {
        let stream = if i == 3 {
            StreamId::new(text).expect("max-length id")
        } else {
            StreamId::new(format!("{text}-{}", uuid::Uuid::new_v4())).expect("valid id")
        };
        let metadata = Metadata::new()
            .with_actor(text.clone())
            .with(text.clone(), text.clone());
        let body = payload(serde_json::json!({ "text": text, "n": 1 }));
        store
            .append(
                AppendRequest::new(
                    stream.clone(),
                    ExpectedVersion::NoStream,
                    vec![NewEvent::new("Odd'\"\\Name", 1, body.clone())],
                )
                .metadata(metadata.clone()),
            )
            .await
            .expect("append succeeds");
        let events = read_stream(&store, &stream).await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].stream.as_str(), stream.as_str());
        assert_eq!(events[0].name, "Odd'\"\\Name");
        assert_eq!(events[0].metadata, metadata);
        let back: serde_json::Value = serde_json::from_str(events[0].payload()).expect("JSON");
        assert_eq!(back["text"].as_str(), Some(text.as_str()));
    }
}

/// An append of no events writes nothing and reports the stream's version.
pub async fn empty_append<S: EventStore>(store: S) {
    let stream = unique_stream("empty");
    store
        .append(AppendRequest::new(
            stream.clone(),
            ExpectedVersion::Any,
            vec![event("A", 1)],
        ))
        .await
        .expect("append succeeds");
    let outcome = store
        .append(AppendRequest::new(
            stream.clone(),
            ExpectedVersion::Exact(1),
            vec![],
        ))
        .await
        .expect("an empty append succeeds");
    assert!(outcome.is_empty());
    assert_eq!(outcome.last_version, 1);
    assert_eq!(outcome.first_position, None);
    let err = store
        .append(AppendRequest::new(
            stream.clone(),
            ExpectedVersion::Exact(0),
            vec![],
        ))
        .await
        .expect_err("an empty append still checks the version");
    assert!(err.as_conflict().is_some());
}

/// A reader waiting at the head of the global log wakes when an event is appended.
pub async fn wait_for_events_wakes<S: EventStore>(store: S) {
    let store = Arc::new(store);
    let head = read_all(&*store, Position::START)
        .await
        .last()
        .map_or(Position::START, |e| e.position);
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            store
                .wait_for_events(head, std::time::Duration::from_secs(30))
                .await
                .expect("wait succeeds");
            started.elapsed()
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    store
        .append(AppendRequest::new(
            unique_stream("wake"),
            ExpectedVersion::Any,
            vec![event("W", 1)],
        ))
        .await
        .expect("append succeeds");
    let waited = tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
        .await
        .expect("the waiter wakes long before its timeout")
        .expect("task completes");
    assert!(waited < std::time::Duration::from_secs(10));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while read_all(&*store, head).await.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the appended event becomes readable"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Generates one `#[tokio::test]` per conformance check, each on a fresh store made by
/// `$make` (an expression evaluating to a future of the store). The calling crate needs
/// `tokio` with the `macros` and `rt-multi-thread` features.
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::store_conformance_tests!(@tests $make;
            append_and_read_in_order,
            read_stream_ranges,
            long_stream_reads_completely,
            expected_version_conflicts,
            concurrent_writers_one_winner_per_version,
            idempotency_keys,
            idempotency_under_concurrent_retries,
            idempotency_key_with_another_request,
            invalid_metadata_refused,
            batch_atomicity,
            oversized_payload_refused,
            global_log_order,
            snapshots,
            fold_reads_match_full_reads,
            hostile_input_round_trips,
            empty_append,
            wait_for_events_wakes,
            snapshots_kept_per_key,
        );
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn concurrent_writers_many_streams() {
            $crate::conformance::concurrent_writers_many_streams($make.await, 20, 25).await;
        }
    };
    (@tests $make:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                $crate::conformance::$check($make.await).await;
            }
        )*
    };
}

/// Snapshots are kept per key, by the rule of [`crate::store::keep_snapshot`]: a snapshot of one key
/// never replaces another key's (two deployed versions of a program keep theirs), a newer
/// snapshot replaces the one of its key and an older changes nothing, and a stream keeps
/// the [`crate::store::SNAPSHOT_KEYS_PER_STREAM`] keys saved most recently.
pub async fn snapshots_kept_per_key<S: EventStore>(store: S) {
    let stream = unique_stream("snap-keys");
    let old = SnapshotKey::new(1, 0xa);
    let new = SnapshotKey::new(1, 0xb);
    store
        .append(AppendRequest::new(
            stream.clone(),
            ExpectedVersion::Any,
            (1..=12).map(|n| event("E", n)).collect(),
        ))
        .await
        .expect("append succeeds");
    let save = |version: Version, key: SnapshotKey| {
        store.save_snapshot(Snapshot::new(
            stream.clone(),
            version,
            key,
            payload(serde_json::json!({ "at": version })),
        ))
    };
    let loaded = |key: SnapshotKey| {
        let stream = stream.clone();
        let store = &store;
        async move {
            store
                .load_snapshot(&stream, key)
                .await
                .expect("load succeeds")
                .map(|s| (s.version, s.payload.get().to_owned()))
        }
    };

    // Two versions of a program, saving in turn: each keeps its own.
    save(4, old).await.expect("save succeeds");
    save(5, new).await.expect("save succeeds");
    save(6, old).await.expect("save succeeds");
    save(3, new)
        .await
        .expect("save of an older snapshot succeeds");
    assert_eq!(loaded(old).await, Some((6, r#"{"at":6}"#.to_owned())));
    assert_eq!(
        loaded(new).await,
        Some((5, r#"{"at":5}"#.to_owned())),
        "a snapshot of another key does not replace this key's, an older one of the same key neither"
    );
    let items: Vec<FoldItem> = store
        .read_for_fold(&stream, 1, Version::MAX, Some(new))
        .try_collect()
        .await
        .expect("read succeeds");
    assert!(
        matches!(&items[..], [FoldItem::Snapshot(s), rest @ ..] if s.version == 5 && rest.len() == 7),
        "the snapshot of its own key, then the events after it: {items:?}"
    );
    let items: Vec<FoldItem> = store
        .read_for_fold(&stream, 1, Version::MAX, Some(old))
        .try_collect()
        .await
        .expect("read succeeds");
    assert!(
        matches!(&items[..], [FoldItem::Snapshot(s), rest @ ..] if s.version == 6 && rest.len() == 6),
        "the snapshot of its own key, then the events after it: {items:?}"
    );

    // Newer keys push the oldest out: `new` was saved before `old`, so it goes first.
    let later: Vec<SnapshotKey> = (0..crate::store::SNAPSHOT_KEYS_PER_STREAM as u64 - 1)
        .map(|i| SnapshotKey::new(2, i))
        .collect();
    for (i, key) in later.iter().enumerate() {
        save(7 + i as Version, *key).await.expect("save succeeds");
    }
    assert_eq!(
        loaded(new).await,
        None,
        "the key saved longest ago is pruned"
    );
    assert_eq!(loaded(old).await, Some((6, r#"{"at":6}"#.to_owned())));
    for (i, key) in later.iter().enumerate() {
        assert_eq!(loaded(*key).await.map(|s| s.0), Some(7 + i as Version));
    }
    save(11, SnapshotKey::new(3, 0))
        .await
        .expect("save succeeds");
    assert_eq!(loaded(old).await, None, "then the next oldest");
}
