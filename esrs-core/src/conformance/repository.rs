//! The repository over the store: its snapshot policy set at run time (every N events, never,
//! a rule of the application's own), snapshots taken on demand, and commands that await
//! while they decide.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use serde_json::value::RawValue;

use crate::error::EncodeError;
use crate::repository::SnapshotPolicy;
use crate::store::{Payload, Snapshot, SnapshotKey, encode_json};
use super::read_stream;
use crate::projection::{InMemoryCheckpoints, Projection, ProjectionRunner};
use crate::{
    Aggregate, BoxError, DecodeError, EventSet, EventStore, ExecuteError, Metadata, RecordedEvent,
    Repository, StreamId, Version,
};

/// The stored name of the suite's one event.
const COUNTED: &str = "conformance.Counted";

/// A number was counted: the suite's one event. Its traits are written by hand rather than
/// derived, so that the suite's types stay out of the program's catalog (a derived event or
/// aggregate registers itself in every program that links it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Counted {
    n: u64,
}

impl EventSet for Counted {
    const NAMES: &'static [&'static str] = &[COUNTED];

    fn name(&self) -> &'static str {
        COUNTED
    }

    fn schema_version(&self) -> u32 {
        1
    }

    fn encode(&self) -> Result<Payload, EncodeError> {
        encode_json(COUNTED, self)
    }

    fn decode(name: &str, version: u32, payload: &str) -> Result<Self, DecodeError> {
        if name != COUNTED {
            return Err(DecodeError::UnknownName {
                name: name.to_owned(),
                known: vec![COUNTED],
            });
        }
        DecodeError::parse(COUNTED, version, payload)
    }
}

/// A tally declared without snapshots.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Tally {
    total: u64,
    events: u64,
}

impl Aggregate for Tally {
    const NAME: &'static str = "tally";
    const SNAPSHOT_KEY: SnapshotKey = SnapshotKey::new(1, 0x7a11_0001);
    type Event = Counted;

    fn apply(&mut self, e: &Counted) {
        self.total += e.n;
        self.events += 1;
    }
}

/// The same tally declared with a snapshot every 3 events.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct SnappedTally {
    total: u64,
    events: u64,
}

impl Aggregate for SnappedTally {
    const NAME: &'static str = "snapped_tally";
    const SNAPSHOT_EVERY: Option<u64> = Some(3);
    const SNAPSHOT_KEY: SnapshotKey = SnapshotKey::new(1, 0x7a11_0003);
    type Event = Counted;

    fn apply(&mut self, e: &Counted) {
        self.total += e.n;
        self.events += 1;
    }

    fn encode_snapshot(&self) -> Option<Result<Payload, EncodeError>> {
        Some(crate::aggregate::encode_snapshot(Self::NAME, self))
    }

    fn decode_snapshot(payload: &RawValue) -> Option<Result<Self, serde_json::Error>> {
        Some(crate::aggregate::decode_snapshot(payload))
    }
}

fn unique_id() -> StreamId {
    StreamId::new(uuid::Uuid::new_v4().simple().to_string()).expect("valid stream id")
}

/// Runs a command that counts `ns` on aggregate `id`.
async fn count<A, S>(repo: &Repository<A, S>, id: &StreamId, ns: &[u64])
where
    A: Aggregate,
    A::Event: From<Counted> + Clone + Send,
    S: EventStore,
{
    let events: Vec<A::Event> = ns.iter().map(|&n| Counted { n }.into()).collect();
    repo.execute(id, move |_: &A| Ok::<_, Infallible>(events.clone()))
        .await
        .expect("the command succeeds");
}

/// The version of the latest snapshot of aggregate `id` usable by `A`'s current code.
async fn snapshot_version<A: Aggregate, S: EventStore>(
    repo: &Repository<A, S>,
    id: &StreamId,
) -> Option<Version> {
    let stream = repo.stream_of(id).expect("valid stream");
    repo.store()
        .load_snapshot(&stream, A::SNAPSHOT_KEY)
        .await
        .expect("the snapshot loads")
        .map(|snapshot| snapshot.version)
}

/// Replaces the snapshot of aggregate `id` at `version` with one holding `state`, so that a
/// load shows whether it started from the snapshot.
async fn plant<A: Aggregate + Serialize, S: EventStore>(
    repo: &Repository<A, S>,
    id: &StreamId,
    version: Version,
    state: &A,
) {
    let stream = repo.stream_of(id).expect("valid stream");
    let payload = crate::aggregate::encode_snapshot(A::NAME, state).expect("the state encodes");
    repo.store()
        .save_snapshot(Snapshot::new(stream, version, A::SNAPSHOT_KEY, payload))
        .await
        .expect("the snapshot saves");
}

/// A policy: each `Counted` of a source tally is counted again on the tally `mirror-<id>`,
/// through the repository, from the handler. Its odd numbers run the command as it is; its
/// even ones with metadata of the policy's own (an actor and a custom field).
struct Mirror<S: EventStore> {
    repo: Repository<Tally, Arc<S>>,
}

impl<S: EventStore> Projection for Mirror<S> {
    type Event = Counted;

    fn name(&self) -> &str {
        "conformance_mirror"
    }

    async fn handle(
        &mut self,
        _tx: &mut (),
        event: Counted,
        envelope: &RecordedEvent,
    ) -> Result<(), BoxError> {
        let Some(source) = envelope.stream.as_str().strip_prefix("tally-src") else {
            return Ok(()); // a mirror's own event, or another check's
        };
        let mirror = StreamId::new(format!("mirror{source}"))?;
        let n = event.n;
        let command = self.repo.execute(&mirror, move |_| Ok::<_, Infallible>(Counted { n }));
        let command = if n % 2 == 0 {
            command.metadata(Metadata::new().with_actor("mirror-policy").with("via", "mirror"))
        } else {
            command
        };
        command.await.map_err(|e| e.to_string())?;
        Ok(())
    }
}

checks! {
    /// `SnapshotPolicy::every(n)` on an aggregate declared without snapshots: a snapshot is
    /// saved whenever a command crosses a multiple of n, and loads start from it.
    pub async fn snapshot_policy_every_n<S: EventStore>(store: S) {
        let store = Arc::new(store);
        let repo = Repository::<Tally, _>::new(store.clone())
            .with_snapshot_policy(SnapshotPolicy::every(3));
        let id = unique_id();
        for n in 1..=4 {
            count(&repo, &id, &[n]).await;
        }
        assert_eq!(snapshot_version(&repo, &id).await, Some(3));
        // Two events in one command, from 4 to 6, cross 6.
        count(&repo, &id, &[5, 6]).await;
        assert_eq!(snapshot_version(&repo, &id).await, Some(6));
        count(&repo, &id, &[7]).await;
        let loaded = repo.load(&id).await.expect("load");
        assert_eq!((loaded.version, loaded.state.total, loaded.state.events), (7, 28, 7));

        // A load starts from the latest snapshot: one that lies is believed.
        plant(&repo, &id, 7, &Tally { total: 1_000, events: 7 }).await;
        let loaded = repo.load(&id).await.expect("load");
        assert_eq!((loaded.version, loaded.state.total), (7, 1_000));
        // The aggregate's own policy (none) neither saves nor reads snapshots.
        let plain = Repository::<Tally, _>::new(store);
        assert_eq!(plain.load(&id).await.expect("load").state.total, 28);
    }

    /// `without_snapshots` overrides the aggregate's `snapshot_every`: no snapshot is saved
    /// and loads fold the whole stream, even when one is there.
    pub async fn snapshot_policy_never<S: EventStore>(store: S) {
        let store = Arc::new(store);
        let repo = Repository::<SnappedTally, _>::new(store.clone()).without_snapshots();
        assert_eq!(format!("{:?}", repo.snapshot_policy()), "SnapshotPolicy::never()");
        let id = unique_id();
        for n in 1..=7 {
            count(&repo, &id, &[n]).await;
        }
        assert_eq!(snapshot_version(&repo, &id).await, None);

        // The aggregate's own policy saves every 3 events.
        let declared = Repository::<SnappedTally, _>::new(store.clone());
        count(&declared, &id, &[8, 9]).await;
        assert_eq!(snapshot_version(&declared, &id).await, Some(9));
        count(&declared, &id, &[10]).await;
        plant(&declared, &id, 10, &SnappedTally { total: 1_000, events: 10 }).await;
        assert_eq!(declared.load(&id).await.expect("load").state.total, 1_000);
        // Without snapshots, the planted one is not read.
        let loaded = repo.load(&id).await.expect("load");
        assert_eq!((loaded.version, loaded.state.total), (10, 55));
    }

    /// `SnapshotPolicy::custom`: the rule sees the stream and the versions before and after
    /// each command, and a snapshot is saved when it says so.
    pub async fn snapshot_policy_custom<S: EventStore>(store: S) {
        let id = unique_id();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        let repo = Repository::<Tally, _>::new(store).with_snapshot_policy(SnapshotPolicy::custom(
            move |c| {
                record.lock().expect("not poisoned").push((c.stream.to_string(), c.before, c.after));
                c.after - c.before >= 5
            },
        ));
        count(&repo, &id, &[1]).await;
        assert_eq!(snapshot_version(&repo, &id).await, None);
        count(&repo, &id, &[1, 2, 3, 4, 5]).await;
        assert_eq!(snapshot_version(&repo, &id).await, Some(6));
        count(&repo, &id, &[1]).await;
        assert_eq!(snapshot_version(&repo, &id).await, Some(6));
        let stream = repo.stream_of(&id).expect("valid stream").to_string();
        assert_eq!(
            *seen.lock().expect("not poisoned"),
            [(stream.clone(), 0, 1), (stream.clone(), 1, 6), (stream, 6, 7)]
        );
        let loaded = repo.load(&id).await.expect("load");
        assert_eq!((loaded.version, loaded.state.total), (7, 17));
    }

    /// `Repository::snapshot` takes a snapshot now at the current version, whatever the
    /// policy, and the next load starts from it; an aggregate with no events has none.
    pub async fn snapshot_on_demand<S: EventStore>(store: S) {
        let store = Arc::new(store);
        // Declared every 3, but the events come in one command of 10 after a bulk import of 2.
        let repo = Repository::<SnappedTally, _>::new(store.clone());
        let id = unique_id();
        assert_eq!(repo.snapshot(&id).await.expect("snapshot"), None);
        assert_eq!(snapshot_version(&repo, &id).await, None);
        count(&repo, &id, &[1, 1]).await;
        assert_eq!(snapshot_version(&repo, &id).await, None);
        assert_eq!(repo.snapshot(&id).await.expect("snapshot"), Some(2));
        assert_eq!(snapshot_version(&repo, &id).await, Some(2));

        // On an aggregate declared without snapshots, with a policy that reads them.
        let tallies = Repository::<Tally, _>::new(store)
            .with_snapshot_policy(SnapshotPolicy::every(1_000));
        let id = unique_id();
        count(&tallies, &id, &(1..=10).collect::<Vec<_>>()).await;
        assert_eq!(snapshot_version(&tallies, &id).await, None);
        assert_eq!(tallies.snapshot(&id).await.expect("snapshot"), Some(10));
        assert_eq!(snapshot_version(&tallies, &id).await, Some(10));
        assert_eq!(tallies.load(&id).await.expect("load").state.total, 55);
        // That repository's loads read snapshots: a newer one that lies is believed.
        count(&tallies, &id, &[11]).await;
        plant(&tallies, &id, 11, &Tally { total: 7, events: 11 }).await;
        assert_eq!(tallies.load(&id).await.expect("load").state.total, 7);
    }

    /// `execute_async`: two commands race on one aggregate, each waiting on a service (here
    /// a barrier both reach after loading); one appends, the other conflicts, reloads and
    /// asks again on the fresh state, so both land, each decided on the state it follows.
    /// The commands run in spawned tasks: the future is `Send`.
    pub async fn async_command_retries_on_the_fresh_state<S: EventStore>(store: S) {
        let repo = Arc::new(Repository::<Tally, _>::new(store));
        let id = unique_id();
        let service = Arc::new(tokio::sync::Barrier::new(2));
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for n in [1_u64, 10] {
            let (repo, id, service) = (repo.clone(), id.clone(), service.clone());
            let (calls, seen) = (calls.clone(), seen.clone());
            tasks.push(tokio::spawn(async move {
                let service = &*service;
                let (calls, seen) = (&*calls, &*seen);
                repo.execute_async(&id, |tally| {
                    Box::pin(async move {
                        if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                            // Both first attempts have loaded version 0 when this returns.
                            service.wait().await;
                        }
                        seen.lock().expect("not poisoned").push((n, tally.events));
                        Ok::<_, Infallible>(Counted { n })
                    })
                })
                .retries(1)
                .await
                .map(|done| done.version())
            }));
        }
        let mut versions = Vec::new();
        for task in tasks {
            versions.push(task.await.expect("the task runs").expect("the command succeeds"));
        }
        versions.sort_unstable();
        assert_eq!(versions, [1, 2]);
        assert_eq!(calls.load(Ordering::SeqCst), 3, "the loser decided again");
        let mut seen = seen.lock().expect("not poisoned").clone();
        seen.sort_unstable();
        // Each decided first on the empty tally; the loser again on the tally after the winner.
        assert_eq!(seen.iter().filter(|(_, events)| *events == 0).count(), 2);
        assert_eq!(seen.iter().filter(|(_, events)| *events == 1).count(), 1);
        let loaded = repo.load(&id).await.expect("load");
        assert_eq!((loaded.version, loaded.state.total), (2, 11));
    }

    /// `execute_async`: a service that fails rejects the command, and nothing is written; a
    /// command dropped while its service is slow (a timeout) writes nothing either.
    pub async fn async_command_failing_or_cancelled_appends_nothing<S: EventStore>(store: S) {
        #[derive(Debug, PartialEq)]
        struct ServiceDown;

        let repo = Repository::<Tally, _>::new(store);
        let id = unique_id();
        let failed = repo
            .execute_async(&id, |_| Box::pin(async { Err::<Counted, _>(ServiceDown) }))
            .await;
        assert!(matches!(failed, Err(ExecuteError::Rejected(ServiceDown))), "{failed:?}");

        let slow = tokio::time::timeout(
            Duration::from_millis(50),
            repo.execute_async(&id, |_| {
                Box::pin(async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    Ok::<_, Infallible>(Counted { n: 1 })
                })
            }),
        )
        .await;
        assert!(slow.is_err(), "the slow command was cut short");
        let stream = repo.stream_of(&id).expect("valid stream");
        assert_eq!(repo.store().stream_version(&stream).await.expect("version"), 0);

        let done = repo
            .execute_async(&id, |tally| {
                Box::pin(async move { Ok::<_, Infallible>(Counted { n: tally.total + 5 }) })
            })
            .await
            .expect("the command succeeds");
        assert_eq!((done.version(), done.state.total), (1, 5));
    }

    /// A policy (a projection whose handler runs a command) propagates correlation and
    /// causation by default: the runner hands each event to the handler as its cause, so the
    /// command's events are caused by the handled event (its id), in its correlation (its own,
    /// or the event itself when it has none) and by its actor; metadata the policy sets keeps
    /// the causation and correlation it leaves unset. Commands outside a handler are caused by
    /// nothing.
    pub async fn policy_commands_are_caused_by_the_event<S: EventStore>(store: S) {
        let store = Arc::new(store);
        let repo = Repository::<Tally, _>::new(store.clone());
        let source = StreamId::new(format!("src{}", uuid::Uuid::new_v4().simple())).expect("valid");
        let correlation = uuid::Uuid::new_v4();
        repo.execute(&source, |_| Ok::<_, Infallible>(Counted { n: 1 }))
            .metadata(Metadata::new().with_correlation_id(correlation).with_actor("alice"))
            .await
            .expect("the first source command");
        repo.execute(&source, |_| Ok::<_, Infallible>(Counted { n: 2 }))
            .await
            .expect("the second source command");
        let causes = read_stream(&*store, &repo.stream_of(&source).expect("valid")).await;
        assert!(
            causes.iter().all(|e| e.metadata.causation_id.is_none()),
            "a command outside a handler is caused by nothing"
        );

        let mirror = Mirror { repo: Repository::new(store.clone()) };
        let mut runner = ProjectionRunner::new(store.clone(), InMemoryCheckpoints::new(), mirror);
        runner.catch_up().await.expect("the policy runs");

        let mirror_id = StreamId::new(format!("mirror{}", &source.as_str()[3..])).expect("valid");
        let caused = read_stream(&*store, &repo.stream_of(&mirror_id).expect("valid")).await;
        assert_eq!(caused.len(), 2, "one command per source event");
        let (first, second) = (&caused[0].metadata, &caused[1].metadata);
        assert_eq!(first.causation_id, Some(causes[0].id), "caused by the handled event");
        assert_eq!(first.correlation_id, Some(correlation), "in the handled event's correlation");
        assert_eq!(first.actor.as_deref(), Some("alice"), "by the handled event's actor");
        assert_eq!(second.causation_id, Some(causes[1].id));
        assert_eq!(
            second.correlation_id,
            Some(causes[1].id),
            "an event without a correlation starts one"
        );
        assert_eq!(second.actor.as_deref(), Some("mirror-policy"), "the policy's own actor");
        assert_eq!(second.custom.get("via"), Some(&serde_json::json!("mirror")));
    }
}
