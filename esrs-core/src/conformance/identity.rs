//! Event identity: every stored event has a unique, stable id, the same in every read.

use std::collections::HashSet;

use super::{event, follow_log, read_all, read_stream, unique_stream};
use crate::store::AppendRequest;
use crate::{EventStore, ExpectedVersion, Position, RecordedEvent};

checks! {
    /// Every event appended gets an id of its own (not the nil UUID, none shared, also within
    /// one append), and every read returns the same id for it: the stream read twice, and the
    /// global log.
    pub async fn event_ids<S: EventStore>(store: S) {
        let start = read_all(&store, Position::START)
            .await
            .last()
            .map_or(Position::START, |e| e.position);
        let a = unique_stream("id-a");
        let b = unique_stream("id-b");
        for (stream, events) in [
            (&a, vec![event("A", 1), event("A", 2), event("A", 3)]),
            (&b, vec![event("B", 1)]),
            (&a, vec![event("A", 4)]),
        ] {
            store
                .append(AppendRequest::new(stream.clone(), ExpectedVersion::Any, events))
                .await
                .expect("append succeeds");
        }
        let mut stored: Vec<RecordedEvent> = read_stream(&store, &a).await;
        stored.extend(read_stream(&store, &b).await);
        assert_eq!(stored.len(), 5);
        assert!(stored.iter().all(|e| !e.id.is_nil()), "every event has an id");
        let ids: HashSet<_> = stored.iter().map(|e| e.id).collect();
        assert_eq!(ids.len(), 5, "no two events share an id");

        let again = read_stream(&store, &a).await;
        assert!(again.iter().zip(&stored).all(|(x, y)| x.id == y.id), "a re-read gives the same ids");

        let log = follow_log(&store, start, 5, |e| e.stream == a || e.stream == b).await;
        for e in log.iter().filter(|e| e.stream == a || e.stream == b) {
            let same = stored
                .iter()
                .find(|s| s.stream == e.stream && s.version == e.version)
                .expect("the log holds the stream's events");
            assert_eq!(e.id, same.id, "the log gives {}@{} the id of its stream read", e.stream, e.version);
        }
    }
}
