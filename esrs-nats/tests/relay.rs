//! The relay and the consumer against the real NATS server.

mod common;

use std::time::Duration;

use common::*;
use esrs_core::projection::{CheckpointStore, ErrorPolicy, InMemoryCheckpoints};
use esrs_core::{
    BoxError, Metadata, Position, Projection, ProjectionRunner, RecordedEvent, StreamId,
};
use esrs_nats::{JetStreamProjection, Outbox, Relay, RelayError};
use esrs_postgres::PgCheckpoints;

/// Remembers every event it is handed, and the metadata a command run by its handler would
/// start from ([`Metadata::inherited`]).
#[derive(Debug, Default)]
struct Collect(Vec<RecordedEvent>, Vec<Metadata>);

impl Projection for Collect {
    type Event = serde_json::Value;
    fn name(&self) -> &str {
        "collect"
    }
    async fn handle(
        &mut self,
        _tx: &mut (),
        _event: serde_json::Value,
        envelope: &RecordedEvent,
    ) -> Result<(), BoxError> {
        self.0.push(envelope.clone());
        self.1.push(Metadata::inherited());
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_events_arrive_exactly_once_and_in_stream_order() {
    let (store, _schema) = fresh_store().await;
    let js = TestStream::create(jetstream_at(&nats_url()).await, Duration::from_secs(120)).await;
    // 1,000 appends of 10 events, round robin over 100 streams: 100 events per stream,
    // interleaved in the log.
    let expected = append_events(&store, 100, 1_000, 10, "a").await;

    let relay = Relay::builder(js.jetstream.clone(), &js.name)
        .subject_prefix(&js.prefix)
        .build()
        .await
        .unwrap();
    let mut runner = ProjectionRunner::new(
        store.clone(),
        Outbox::new(PgCheckpoints::new(&store)),
        relay,
    );
    runner.catch_up().await.unwrap();
    // Caught up again: nothing more is sent.
    runner.catch_up().await.unwrap();

    let messages = js.read_all().await;
    assert_exactly_once_in_order(&messages, &expected);
    for (subject, record) in &messages {
        assert_eq!(
            *subject,
            esrs_nats::subject::default_subject(&js.prefix, record.stream.as_str())
        );
        assert_eq!(record.name, "InvoiceIssued");
        assert_eq!(record.schema_version, 1);
    }

    // The consumer rebuilds the same envelopes, each once.
    let stream = js.stream().await;
    let mut consumer =
        JetStreamProjection::new(stream, InMemoryCheckpoints::new(), Collect::default())
            .filter_subject(format!("{}.invoice.>", js.prefix))
            .batch_size(1_000);
    let progress = consumer.catch_up().await.unwrap();
    assert_eq!(progress.checkpoint.sequence, 10_000);
    let seen = &consumer.projection().0;
    assert_eq!(seen.len(), 10_000);
    // Each handler ran with its event as the cause of what it would run (a policy's
    // command), as under a ProjectionRunner.
    for (record, inherited) in seen.iter().zip(&consumer.projection().1) {
        assert_eq!(*inherited, Metadata::caused_by(record));
    }
    // Each stream's events in the log's order (across streams, a batch may interleave
    // them differently: the relay holds a stream's next event until its last one is
    // acknowledged).
    let mut last: std::collections::HashMap<&str, esrs_core::Position> = Default::default();
    for record in seen {
        if let Some(before) = last.insert(record.stream.as_str(), record.position) {
            assert!(
                before < record.position,
                "stream {} out of log order",
                record.stream
            );
        }
    }
    let mut positions: Vec<_> = seen.iter().map(|r| r.position).collect();
    positions.sort();
    positions.dedup();
    assert_eq!(positions.len(), 10_000);
}

fn record(sequence: u64, stream: &str, version: u64) -> RecordedEvent {
    let payload = format!(r#"{{"sequence":{sequence}}}"#);
    RecordedEvent::new(
        Position::new(1, sequence),
        StreamId::new(stream).unwrap(),
        version,
        "InvoiceIssued".to_owned(),
        1,
        payload,
        Metadata::new(),
        chrono::Utc::now(),
    )
}

/// A connection drop can lose one publish and let a later one through; if both were in
/// flight for one subject, the retry would store them out of order. So the relay keeps
/// at most one unacknowledged event per subject and holds the next one back until the
/// batch settles, while events of other subjects go out at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_one_event_per_subject_is_in_flight() {
    let js = TestStream::create(jetstream_at(&nats_url()).await, Duration::from_secs(120)).await;
    let mut relay = Relay::builder(js.jetstream.clone(), &js.name)
        .subject_prefix(&js.prefix)
        .build()
        .await
        .unwrap();
    let outbox = Outbox::new(InMemoryCheckpoints::new());
    let mut tx = outbox.begin().await.unwrap();
    let log = [
        record(1, "invoice-a", 1),
        record(2, "invoice-a", 2),
        record(3, "invoice-b", 1),
        record(4, "invoice-a", 3),
        record(5, "invoice-c", 1),
        record(6, "invoice-b", 2),
    ];
    let mut in_flight = Vec::new();
    for event in &log {
        relay
            .handle(&mut tx, esrs_nats::Undecoded, event)
            .await
            .unwrap();
        in_flight.push((tx.pending(), tx.held_back()));
    }
    // a1 goes out; a2 waits; b1 goes out; a3 waits; c1 goes out; b2 waits.
    assert_eq!(in_flight, [(1, 0), (1, 1), (2, 1), (2, 2), (3, 2), (3, 3)]);
    assert!(
        js.messages().await <= 3,
        "the held-back events are not sent yet"
    );
    // Settling sends the held-back events in rounds, each after its predecessor's ack.
    outbox.commit(tx).await.unwrap();
    let stored: Vec<(String, u64)> = js
        .read_all()
        .await
        .into_iter()
        .map(|(_, r)| (r.stream.as_str().to_owned(), r.version))
        .collect();
    let expected: Vec<(String, u64)> = [
        ("invoice-a", 1),
        ("invoice-b", 1),
        ("invoice-c", 1),
        ("invoice-a", 2),
        ("invoice-b", 2),
        ("invoice-a", 3),
    ]
    .into_iter()
    .map(|(s, v)| (s.to_owned(), v))
    .collect();
    assert_eq!(stored, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_duplicate_window_is_too_short_is_refused() {
    let js = TestStream::create(jetstream_at(&nats_url()).await, Duration::from_secs(10)).await;
    let error = Relay::builder(js.jetstream.clone(), &js.name)
        .duplicate_window(Duration::from_secs(60))
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            RelayError::DuplicateWindowTooShort { stream_window, relay_window, .. }
                if stream_window == Duration::from_secs(10) && relay_window == Duration::from_secs(60)
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("duplicate_window"), "{error}");
    let missing = Relay::builder(js.jetstream.clone(), "NO_SUCH_STREAM")
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(missing, RelayError::StreamInfo { .. }),
        "{missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_at_once_publish_nothing_twice() {
    let (store, _schema) = fresh_store().await;
    let js = TestStream::create(jetstream_at(&nats_url()).await, Duration::from_secs(120)).await;
    let relay = || async {
        Relay::builder(js.jetstream.clone(), &js.name)
            .subject_prefix(&js.prefix)
            .build()
            .await
            .unwrap()
    };
    // Two processes' relays over one store: the projection lock lets one run, and the
    // other takes over when it stops.
    let spawn = |relay| {
        ProjectionRunner::new(
            store.clone(),
            Outbox::new(PgCheckpoints::new(&store)),
            relay,
        )
        .batch_size(100)
        .poll_interval(Duration::from_millis(200))
        .wait_for_lock(Duration::from_millis(100))
        .error_policy(ErrorPolicy::Retry {
            max: 50,
            backoff: Duration::from_millis(50),
        })
        .spawn()
    };
    let first = spawn(relay().await);
    let second = spawn(relay().await);
    let mut expected = append_events(&store, 20, 100, 5, "b").await;
    js.wait_for(500, Duration::from_secs(30)).await;
    first.stop().await.unwrap();
    for (stream, n) in append_events(&store, 20, 100, 5, "c").await {
        expected.insert(stream, n);
    }
    js.wait_for(1_000, Duration::from_secs(30)).await;
    second.stop().await.unwrap();

    // Two relays without a shared lock (separate checkpoint stores) each send the whole
    // log: the message ids make JetStream keep one copy.
    let mut a = ProjectionRunner::new(
        store.clone(),
        Outbox::new(InMemoryCheckpoints::new()),
        relay().await,
    );
    let mut b = ProjectionRunner::new(
        store.clone(),
        Outbox::new(InMemoryCheckpoints::new()),
        relay().await,
    );
    let (ra, rb) = tokio::join!(a.catch_up(), b.catch_up());
    ra.unwrap();
    rb.unwrap();

    tokio::time::sleep(Duration::from_millis(300)).await;
    let messages = js.read_all().await;
    assert_exactly_once_in_order(&messages, &expected);
}
