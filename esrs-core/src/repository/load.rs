//! Loading an aggregate: the latest snapshot and the tail, time travel and history.

use std::time::Instant;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use tracing::Instrument;

use crate::aggregate::Aggregate;
use crate::envelope::FoldEvent;
use crate::envelope::RecordedEvent;
use crate::error::{ErrorChain, Result};
use crate::event::EventSet;
use crate::metrics::{AggregateKeys, SnapshotUse};
use crate::store::{EventStore, FoldItem};
use crate::stream::{StreamId, Version};

use super::{Repository, decode_stored};

/// The state of an aggregate and the stream version it was folded up to.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Loaded<A> {
    /// The state.
    pub state: A,
    /// The version of the last event applied; 0 for a new aggregate.
    pub version: Version,
}

impl<A> Loaded<A> {
    /// The version of the last event applied; 0 for a new aggregate. The same as the
    /// `version` field, named like [`Executed::version`](super::Executed::version) and [`HistoryEntry::version`].
    pub fn version(&self) -> Version {
        self.version
    }
}

impl<A> std::ops::Deref for Loaded<A> {
    type Target = A;
    fn deref(&self) -> &A {
        &self.state
    }
}

/// An event of an aggregate, decoded, with its stored envelope.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HistoryEntry<E> {
    /// The decoded event.
    pub event: E,
    /// The envelope: version, position, metadata, recorded time and the raw payload.
    pub recorded: RecordedEvent,
}

impl<E: EventSet> HistoryEntry<E> {
    /// The event's version in its stream.
    pub fn version(&self) -> Version {
        self.recorded.version
    }
}

impl<A: Aggregate, S: EventStore> Repository<A, S> {
    /// The current state of aggregate `id`: the latest usable snapshot plus the events
    /// after it. An aggregate with no events is `A::default()` at version 0.
    pub async fn load(&self, id: &StreamId) -> Result<Loaded<A>> {
        let stream = self.stream_of(id)?;
        let span = tracing::debug_span!("esrs.load", aggregate = A::NAME, stream = %stream);
        self.load_stream(&stream).instrument(span).await
    }

    /// The current state of `stream`, timed as `esrs_load_duration_seconds`.
    pub(super) async fn load_stream(&self, stream: &StreamId) -> Result<Loaded<A>> {
        let started = Instant::now();
        let (loaded, snapshot) = self.load_latest(stream).await?;
        AggregateKeys::<A>::load(snapshot, started.elapsed());
        Ok(loaded)
    }

    /// The current state of `stream` and whether a snapshot gave it.
    async fn load_latest(&self, stream: &StreamId) -> Result<(Loaded<A>, SnapshotUse)> {
        if !self.snapshots.reads() {
            return Ok((self.fold(stream, Version::MAX).await?, SnapshotUse::None));
        }
        let every = self.snapshots.policy.interval(A::SNAPSHOT_EVERY);
        let mut items = self
            .store
            .read_for_fold(stream, 1, Version::MAX, Some(A::SNAPSHOT_KEY));
        let mut loaded = Loaded {
            state: A::default(),
            version: 0,
        };
        let mut first = true;
        let mut used = SnapshotUse::Miss;
        while let Some(item) = items.next().await {
            match item? {
                FoldItem::Snapshot(snapshot) if first => {
                    match self.snapshots.decode(&snapshot.payload) {
                        Some(Ok(state)) => {
                            used = SnapshotUse::Hit;
                            loaded = Loaded {
                                state,
                                version: snapshot.version,
                            }
                        }
                        Some(Err(error)) => {
                            tracing::warn!(
                                aggregate = A::NAME,
                                stream = %stream,
                                snapshot_version = snapshot.version,
                                error = %ErrorChain::new(&error),
                                "ignoring a snapshot that does not decode; folding the whole stream"
                            );
                            drop(items);
                            AggregateKeys::<A>::snapshot_miss(true);
                            let loaded = self.fold(stream, Version::MAX).await?;
                            return Ok((loaded, SnapshotUse::Miss));
                        }
                        None => {
                            drop(items);
                            let loaded = self.fold(stream, Version::MAX).await?;
                            return Ok((loaded, SnapshotUse::None));
                        }
                    }
                }
                FoldItem::Snapshot(_) => {}
                FoldItem::Event(event) => {
                    self.apply_fold_event(&mut loaded, stream, &event).await?;
                }
            }
            first = false;
        }
        // A stream this long has had a snapshot saved, unless it was written by another
        // fold, deleted, its save failed or is still to come.
        if used == SnapshotUse::Miss && every.is_some_and(|every| loaded.version >= every) {
            AggregateKeys::<A>::snapshot_miss(false);
        }
        Ok((loaded, used))
    }

    async fn apply_fold_event(
        &self,
        loaded: &mut Loaded<A>,
        stream: &StreamId,
        event: &FoldEvent,
    ) -> Result<()> {
        let decoded: A::Event = decode_stored(
            self.keys.as_deref(),
            stream,
            event.version,
            &event.name,
            event.schema_version,
            &event.payload,
        )
        .await?;
        loaded.state.apply(&decoded);
        loaded.version = event.version;
        Ok(())
    }

    /// The fold of the events of `stream` up to version `to`, read with only what the fold
    /// needs.
    pub(super) async fn fold(&self, stream: &StreamId, to: Version) -> Result<Loaded<A>> {
        let mut loaded = Loaded {
            state: A::default(),
            version: 0,
        };
        let mut items = self.store.read_for_fold(stream, 1, to, None);
        while let Some(item) = items.next().await {
            if let FoldItem::Event(event) = item? {
                self.apply_fold_event(&mut loaded, stream, &event).await?;
            }
        }
        Ok(loaded)
    }

    /// The fold of the events of `stream` recorded up to and including `until`; needs the
    /// full envelope for the recorded time.
    async fn fold_until(&self, stream: &StreamId, until: DateTime<Utc>) -> Result<Loaded<A>> {
        let mut loaded = Loaded {
            state: A::default(),
            version: 0,
        };
        let mut events = self.store.read_stream(stream, 1, Version::MAX);
        while let Some(event) = events.next().await {
            let event = event?;
            if event.recorded_at > until {
                break;
            }
            let decoded: A::Event = self.decode_recorded(&event).await?;
            loaded.state.apply(&decoded);
            loaded.version = event.version;
        }
        Ok(loaded)
    }

    async fn decode_recorded(&self, recorded: &RecordedEvent) -> Result<A::Event> {
        decode_stored(
            self.keys.as_deref(),
            &recorded.stream,
            recorded.version,
            &recorded.name,
            recorded.schema_version,
            &recorded.payload,
        )
        .await
    }

    /// The state of aggregate `id` as of stream version `version`: the fold of its first
    /// `version` events (fewer if the stream is shorter).
    pub async fn load_at(&self, id: &StreamId, version: Version) -> Result<Loaded<A>> {
        let stream = self.stream_of(id)?;
        let span =
            tracing::debug_span!("esrs.load_at", aggregate = A::NAME, stream = %stream, version);
        self.fold(&stream, version).instrument(span).await
    }

    /// The state of aggregate `id` as of time `at`: the fold of the events recorded up to
    /// and including `at`.
    pub async fn load_as_of(&self, id: &StreamId, at: DateTime<Utc>) -> Result<Loaded<A>> {
        let stream = self.stream_of(id)?;
        let span = tracing::debug_span!("esrs.load_as_of", aggregate = A::NAME, stream = %stream, at = %at);
        self.fold_until(&stream, at).instrument(span).await
    }

    /// Every event of aggregate `id`, decoded, with its envelope (version, metadata,
    /// recorded time): the answer to "how did we get here?".
    pub async fn history(&self, id: &StreamId) -> Result<Vec<HistoryEntry<A::Event>>> {
        let stream = self.stream_of(id)?;
        let span = tracing::debug_span!("esrs.history", aggregate = A::NAME, stream = %stream);
        async {
            let mut events = self.store.read_stream(&stream, 1, Version::MAX);
            let mut history = Vec::new();
            while let Some(recorded) = events.next().await {
                let recorded = recorded?;
                let event = self.decode_recorded(&recorded).await?;
                history.push(HistoryEntry { event, recorded });
            }
            Ok(history)
        }
        .instrument(span)
        .await
    }
}
