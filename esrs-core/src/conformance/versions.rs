//! Versions 1, 2, 3 … per stream, and reads of a stream: in order, by range, completely.

use futures_util::TryStreamExt;

use super::{event, n_of, read_stream, unique_stream};
use crate::store::AppendRequest;
use crate::{EventStore, ExpectedVersion, Metadata, RecordedEvent, Version};

checks! {
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
}
