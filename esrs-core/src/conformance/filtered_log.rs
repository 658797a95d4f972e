//! Filtered reads of the global log: the events of some names or of one shard, in order, each
//! once, and a reach that covers the skipped events, so that a reader resuming where it got
//! misses nothing and reads nothing twice.

use futures_util::TryStreamExt;

use super::{event, follow_log, unique_stream};
use crate::store::{AppendRequest, LogEntry, LogFilter, Shard};
use crate::{EventStore, ExpectedVersion, Position, RecordedEvent, StreamId};

/// Reads `filter`'s events after `after`, resuming from the farthest entry of each read (an
/// event or a [`LogEntry::Through`]) until the reads got through `end`, or for 30 s at most.
/// Returns the events and how far the reads got.
async fn follow_filtered<S: EventStore>(
    store: &S,
    after: Position,
    end: Position,
    filter: &LogFilter,
) -> (Vec<RecordedEvent>, Position) {
    let mut events = Vec::new();
    let mut reached = after;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while reached < end && std::time::Instant::now() < deadline {
        let entries: Vec<LogEntry> = store
            .read_log(reached, filter)
            .try_collect()
            .await
            .expect("read_log succeeds");
        for entry in entries {
            assert!(
                entry.position() > reached,
                "entries come in increasing position order"
            );
            reached = entry.position();
            if let LogEntry::Event(event) = entry {
                events.push(event);
            }
        }
        if reached < end {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    (events, reached)
}

checks! {
    /// A filtered read gives exactly the events of its names, or of its shard, or both, in
    /// position order, each once; it gets through the skipped events after the last one it
    /// gives; an empty list of names gives no event but still gets through the log.
    pub async fn read_log_filters_names_and_shards<S: EventStore>(store: S) {
        let start = store.head_position().await.expect("head").unwrap_or(Position::START);
        let streams: Vec<StreamId> = (0..8).map(|_| unique_stream("filtered")).collect();
        let names = ["FilteredA", "FilteredB", "FilteredC"];
        for round in 0..4u64 {
            for (i, stream) in streams.iter().enumerate() {
                let name = names[(i + round as usize) % names.len()];
                store
                    .append(AppendRequest::new(
                        stream.clone(),
                        ExpectedVersion::Any,
                        vec![event(name, round)],
                    ))
                    .await
                    .expect("append succeeds");
            }
        }
        // The last event is one that most filters below skip.
        let last_stream = unique_stream("filtered-last");
        store
            .append(AppendRequest::new(last_stream.clone(), ExpectedVersion::Any, vec![event("FilteredZ", 0)]))
            .await
            .expect("append succeeds");
        let ours = |e: &RecordedEvent| streams.contains(&e.stream) || e.stream == last_stream;
        let log: Vec<RecordedEvent> = follow_log(&store, start, 33, ours).await.into_iter().filter(ours).collect();
        assert_eq!(log.len(), 33);
        let end = log.last().expect("events").position;
        let key = |e: &RecordedEvent| (e.stream.clone(), e.version);

        let check = |filter: LogFilter, got: Vec<RecordedEvent>, reached: Position| {
            assert!(reached >= end, "the read gets through the skipped events ({filter:?})");
            let got: Vec<_> = got.iter().filter(|e| ours(e)).map(key).collect();
            let expected: Vec<_> = log
                .iter()
                .filter(|e| filter.matches(&e.name, &e.stream))
                .map(key)
                .collect();
            assert_eq!(got, expected, "the matching events, in order, each once ({filter:?})");
        };

        let filter = LogFilter::names(["FilteredB"]);
        let (got, reached) = follow_filtered(&store, start, end, &filter).await;
        assert_eq!(got.iter().filter(|e| ours(e)).count(), 11);
        assert!(got.iter().all(|e| e.name == "FilteredB"));
        check(filter, got, reached);

        let filter = LogFilter::names(["FilteredC", "FilteredA"]);
        let (got, reached) = follow_filtered(&store, start, end, &filter).await;
        check(filter, got, reached);

        let filter = LogFilter::names(["NoSuchName"]);
        let (got, reached) = follow_filtered(&store, start, end, &filter).await;
        assert!(got.is_empty());
        check(filter, got, reached);

        let filter = LogFilter::names(Vec::<String>::new());
        let (got, reached) = follow_filtered(&store, start, end, &filter).await;
        assert!(got.is_empty());
        check(filter, got, reached);

        let mut by_shard = Vec::new();
        for index in 0..3 {
            let shard = Shard::new(index, 3).expect("a shard");
            let filter = LogFilter::all().in_shard(shard);
            let (got, reached) = follow_filtered(&store, start, end, &filter).await;
            assert!(got.iter().all(|e| Shard::of(&e.stream, 3) == index));
            by_shard.extend(got.iter().filter(|e| ours(e)).map(key));
            check(filter, got, reached);

            let filter = LogFilter::names(["FilteredA", "FilteredZ"]).in_shard(shard);
            let (got, reached) = follow_filtered(&store, start, end, &filter).await;
            check(filter, got, reached);
        }
        by_shard.sort();
        let mut all: Vec<_> = log.iter().map(key).collect();
        all.sort();
        assert_eq!(by_shard, all, "the shards split the log without overlap or loss");

        let (got, reached) = follow_filtered(&store, start, end, &LogFilter::all()).await;
        check(LogFilter::all(), got, reached);
    }
}
