//! Optimistic concurrency: a stale writer gets a typed conflict, and any number of writers leave
//! no gap and no duplicate.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::{event, n_of, read_stream, unique_stream};
use crate::store::AppendRequest;
use crate::{Error, EventStore, ExpectedVersion, StreamId, Version};

checks! {
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
    #[suite_args(20, 25)]
    pub async fn concurrent_writers_many_streams<S: EventStore>(
        store: S,
        streams: usize,
        appends_per_task: u64,
    ) {
        const TASKS: u64 = 16;
        let store = Arc::new(store);
        let ids: Arc<Vec<StreamId>> =
            Arc::new((0..streams).map(|_| unique_stream("many")).collect());
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
}
