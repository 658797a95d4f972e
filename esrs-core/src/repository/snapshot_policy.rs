//! The snapshot policy: when a command saves the state it produced as a snapshot, set by the
//! aggregate (`#[aggregate(snapshot_every = N)]`) or by the repository at run time; and
//! snapshots taken on demand.

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::aggregate::Aggregate;
use crate::error::{EncodeError, ErrorChain, Result};
use crate::event::Payload;
use crate::metrics::AggregateKeys;
use crate::snapshot::Snapshot;
use crate::store::EventStore;
use crate::stream::{StreamId, Version};

use super::{Loaded, Repository};

/// When a repository saves a snapshot of an aggregate after a command.
///
/// The default, [`SnapshotPolicy::aggregate`], is what the aggregate declares with
/// `#[aggregate(snapshot_every = N)]` (no snapshots without it). A repository can override
/// it with [`Repository::with_snapshot_policy`] — every N events, never, or a rule of the
/// application's own — without a second aggregate type:
///
/// ```
/// # use esrs_core::*;
/// # use esrs_core::repository::SnapshotPolicy;
/// # fn demo<A: Aggregate + serde::Serialize + serde::de::DeserializeOwned>(store: InMemoryStore) {
/// // Every 500 events, whatever the aggregate declares.
/// let repo = Repository::<A, _>::new(store.clone()).with_snapshot_policy(SnapshotPolicy::every(500));
/// // After any command that appends 20 events or more at once.
/// let bulk = Repository::<A, _>::new(store)
///     .with_snapshot_policy(SnapshotPolicy::custom(|c| c.after - c.before >= 20));
/// # }
/// ```
///
/// A snapshot is only ever a shortcut: it is saved after the events are committed, a failure
/// to save it is logged and ignored, and a snapshot the current code cannot use (another
/// `snapshot_version` or other `#[apply]` handlers) is ignored when loading.
#[derive(Clone)]
pub struct SnapshotPolicy {
    rule: Rule,
}

#[derive(Clone)]
enum Rule {
    Aggregate,
    Every(u64),
    Never,
    Custom(Arc<dyn Fn(&SnapshotContext<'_>) -> bool + Send + Sync>),
}

impl SnapshotPolicy {
    /// What the aggregate declares: `#[aggregate(snapshot_every = N)]`, or no snapshots.
    pub fn aggregate() -> Self {
        Self {
            rule: Rule::Aggregate,
        }
    }

    /// A snapshot whenever a command takes the stream's version across a multiple of `n`;
    /// `every(0)` is [`never`](Self::never).
    pub fn every(n: u64) -> Self {
        if n == 0 {
            return Self::never();
        }
        Self {
            rule: Rule::Every(n),
        }
    }

    /// No snapshots: none is saved, and loads fold the whole stream without looking for one.
    pub fn never() -> Self {
        Self { rule: Rule::Never }
    }

    /// A snapshot after every command for which `decide` answers `true`. It runs after each
    /// command that appended events, with the stream and its versions before and after.
    pub fn custom(decide: impl Fn(&SnapshotContext<'_>) -> bool + Send + Sync + 'static) -> Self {
        Self {
            rule: Rule::Custom(Arc::new(decide)),
        }
    }

    /// Whether a command that took `stream` from version `before` to `after` saves a
    /// snapshot, for an aggregate declaring `declared` (`A::SNAPSHOT_EVERY`).
    fn wants(&self, declared: Option<u64>, context: &SnapshotContext<'_>) -> bool {
        let every = match &self.rule {
            Rule::Aggregate => declared.filter(|n| *n > 0),
            Rule::Every(n) => Some(*n),
            Rule::Never => None,
            Rule::Custom(decide) => return context.after > context.before && decide(context),
        };
        every.is_some_and(|every| context.before / every != context.after / every)
    }

    /// How often a stream of this policy has a snapshot saved, when that is known: a load
    /// of a longer stream without one counts as a snapshot miss.
    pub(super) fn interval(&self, declared: Option<u64>) -> Option<u64> {
        match &self.rule {
            Rule::Aggregate => declared.filter(|n| *n > 0),
            Rule::Every(n) => Some(*n),
            Rule::Never | Rule::Custom(_) => None,
        }
    }
}

impl Default for SnapshotPolicy {
    fn default() -> Self {
        Self::aggregate()
    }
}

impl std::fmt::Debug for SnapshotPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.rule {
            Rule::Aggregate => f.write_str("SnapshotPolicy::aggregate()"),
            Rule::Every(n) => write!(f, "SnapshotPolicy::every({n})"),
            Rule::Never => f.write_str("SnapshotPolicy::never()"),
            Rule::Custom(_) => f.write_str("SnapshotPolicy::custom(..)"),
        }
    }
}

/// What a [`SnapshotPolicy::custom`] rule decides on: the command that just appended.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct SnapshotContext<'a> {
    /// The aggregate's stream.
    pub stream: &'a StreamId,
    /// Its version before the command's events.
    pub before: Version,
    /// Its version after them: the version the snapshot would be taken at.
    pub after: Version,
}

/// How a repository writes and reads snapshots of `A`, and when.
pub(crate) struct Snapshots<A> {
    pub(super) policy: SnapshotPolicy,
    /// The codec given with the policy; `None`: the aggregate's own.
    codec: Option<Codec<A>>,
}

impl<A> Clone for Snapshots<A> {
    fn clone(&self) -> Self {
        Self {
            policy: self.policy.clone(),
            codec: self.codec,
        }
    }
}

impl<A> Default for Snapshots<A> {
    fn default() -> Self {
        Self {
            policy: SnapshotPolicy::aggregate(),
            codec: None,
        }
    }
}

struct Codec<A> {
    encode: fn(&A) -> std::result::Result<Payload, EncodeError>,
    decode: fn(&RawValue) -> std::result::Result<A, serde_json::Error>,
}

impl<A> Clone for Codec<A> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A> Copy for Codec<A> {}

impl<A: Aggregate> Snapshots<A> {
    /// Whether loads look for a snapshot.
    pub(super) fn reads(&self) -> bool {
        match self.policy.rule {
            Rule::Never => false,
            Rule::Aggregate => self.codec.is_some() || A::SNAPSHOT_EVERY.is_some(),
            Rule::Every(_) | Rule::Custom(_) => true,
        }
    }

    /// The state of a snapshot's payload; `None` when the aggregate has no snapshots.
    pub(super) fn decode(
        &self,
        payload: &RawValue,
    ) -> Option<std::result::Result<A, serde_json::Error>> {
        match self.codec {
            Some(codec) => Some((codec.decode)(payload)),
            None => A::decode_snapshot(payload),
        }
    }

    fn encode(&self, state: &A) -> Option<std::result::Result<Payload, EncodeError>> {
        match self.codec {
            Some(codec) => Some((codec.encode)(state)),
            None => state.encode_snapshot(),
        }
    }
}

impl<A: Aggregate, S: EventStore> Repository<A, S> {
    /// Saves snapshots of this repository's aggregates by `policy` instead of the
    /// aggregate's `#[aggregate(snapshot_every = N)]`, written and read with the state's
    /// serde implementation (which is why it needs `A: Serialize + DeserializeOwned`; an
    /// aggregate declared without `snapshot_every` can be snapshotted this way too).
    ///
    /// Snapshots are keyed by the aggregate's `snapshot_version` and `#[apply]` handlers, as
    /// the aggregate's own are: a snapshot saved by another policy with the same code is
    /// used, one saved by other code ignored.
    pub fn with_snapshot_policy(mut self, policy: SnapshotPolicy) -> Self
    where
        A: Serialize + DeserializeOwned,
    {
        self.snapshots = Snapshots {
            policy,
            codec: Some(Codec {
                encode: |state| crate::aggregate::encode_snapshot(A::NAME, state),
                decode: crate::aggregate::decode_snapshot,
            }),
        };
        self
    }

    /// No snapshots for this repository's aggregates, whatever the aggregate declares: none
    /// is saved, and loads fold the whole stream. For a tool that must read the events
    /// themselves, or a service that keeps its states elsewhere.
    pub fn without_snapshots(mut self) -> Self {
        self.snapshots = Snapshots {
            policy: SnapshotPolicy::never(),
            codec: None,
        };
        self
    }

    /// The repository's snapshot policy.
    pub fn snapshot_policy(&self) -> &SnapshotPolicy {
        &self.snapshots.policy
    }

    /// Takes a snapshot of aggregate `id` now, whatever the policy (after a bulk import,
    /// say, so that the next load does not fold every imported event): loads it and saves
    /// its state at its current version. Returns that version, or `None` for an aggregate
    /// with no events (nothing to save).
    ///
    /// Unlike the snapshots saved after a command, a failure to encode or to save is
    /// returned, not logged.
    pub async fn snapshot(&self, id: &StreamId) -> Result<Option<Version>>
    where
        A: Serialize,
    {
        let stream = self.stream_of(id)?;
        let loaded = self.load_stream(&stream).await?;
        if loaded.version == 0 {
            return Ok(None);
        }
        let payload = crate::aggregate::encode_snapshot(A::NAME, &loaded.state)?;
        self.store
            .save_snapshot(Snapshot::new(
                stream,
                loaded.version,
                A::SNAPSHOT_KEY,
                payload,
            ))
            .await?;
        AggregateKeys::<A>::snapshot_saved();
        Ok(Some(loaded.version))
    }

    pub(super) async fn maybe_snapshot(
        &self,
        stream: &StreamId,
        before: Version,
        loaded: &Loaded<A>,
    ) {
        let context = SnapshotContext {
            stream,
            before,
            after: loaded.version,
        };
        if !self.snapshots.policy.wants(A::SNAPSHOT_EVERY, &context) {
            return;
        }
        let payload = match self.snapshots.encode(&loaded.state) {
            Some(Ok(payload)) => payload,
            Some(Err(error)) => {
                tracing::warn!(aggregate = A::NAME, stream = %stream, error = %ErrorChain::new(&error), "cannot encode a snapshot; continuing without it");
                return;
            }
            None => return,
        };
        let snapshot = Snapshot::new(stream.clone(), loaded.version, A::SNAPSHOT_KEY, payload);
        match self.store.save_snapshot(snapshot).await {
            Ok(()) => AggregateKeys::<A>::snapshot_saved(),
            Err(error) => {
                tracing::warn!(aggregate = A::NAME, stream = %stream, error = %ErrorChain::new(&error), "cannot save a snapshot; continuing without it");
            }
        }
    }
}
