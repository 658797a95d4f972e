//! The global log: every event once, in position order; a reader never skips an event and wakes
//! when one is appended.

use std::sync::Arc;

use super::{event, follow_log, n_of, read_all, unique_stream};
use crate::store::AppendRequest;
use crate::{EventStore, ExpectedVersion, Position};

checks! {
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
        let log = follow_log(&store, start, 20, |e| e.stream == a || e.stream == b).await;
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
}
