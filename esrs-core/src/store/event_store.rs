//! The event store abstraction.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_core::Stream;

use crate::envelope::{AppendOutcome, AppendRequest, FoldEvent, RecordedEvent};
use crate::error::Result;
use crate::idempotency::IdempotencyKey;
use crate::idempotency::IdempotencyRecord;
use crate::position::Position;
use crate::snapshot::{Snapshot, SnapshotKey};
use crate::stream::{StreamId, Version};

use super::log::{LogFilter, LogStream, filter_in_client};

/// The default limit on the size of one event's payload: 1 MiB.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

/// A stream of recorded events, read lazily from the store.
pub type EventStream<'a> = Pin<Box<dyn Stream<Item = Result<RecordedEvent>> + Send + 'a>>;

/// A stream of what a fold needs, read lazily from the store: a snapshot first if one was
/// asked for and found, then events.
pub type FoldStream<'a> = Pin<Box<dyn Stream<Item = Result<FoldItem>> + Send + 'a>>;

/// An item of [`EventStore::read_for_fold`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum FoldItem {
    /// The snapshot of the requested key; always the first item when present.
    Snapshot(Snapshot),
    /// An event, after the snapshot's version when there is one.
    Event(FoldEvent),
}

/// Where events live: an append-only log of streams, with snapshots and idempotency keys.
///
/// Every implementation keeps these guarantees, and proves it by passing the conformance
/// suite (`esrs_core::conformance`, feature `conformance`):
///
/// - the versions of a stream are 1, 2, 3 … with no gap and no duplicate, whatever the
///   number of concurrent writers; a stale writer gets [`Error::Conflict`](crate::Error::Conflict);
/// - an append is all or nothing;
/// - an idempotency key appends at most once, and a repeat of the same request gets the
///   original outcome, decided by [`IdempotencyRecord::replay`] (another request with the
///   key is refused); keys are kept for a retention period;
/// - a reader of the global log that resumes after its last position never skips an event;
/// - payloads over the store's limit are refused with
///   [`Error::PayloadTooLarge`](crate::Error::PayloadTooLarge).
///
/// The futures are `Send`, so a store is usable from a multi-threaded tokio runtime.
pub trait EventStore: Send + Sync + 'static {
    /// Appends the request's events atomically, after checking the expected version and
    /// the idempotency key.
    fn append(&self, request: AppendRequest) -> impl Future<Output = Result<AppendOutcome>> + Send;

    /// Reads the events of `stream` with versions `from..=to`, in order. Use
    /// `Version::MAX` as `to` to read to the end. A stream that does not exist is empty.
    fn read_stream(&self, stream: &StreamId, from: Version, to: Version) -> EventStream<'_>;

    /// Reads the global log after `after`, in [`Position`] order, up to the events that are
    /// safely visible now: the stream ends when the reader has caught up, it does not wait.
    fn read_all(&self, after: Position) -> EventStream<'_>;

    /// Reads the events of the global log after `after` that `filter` matches, like
    /// [`read_all`](Self::read_all) (in [`Position`] order, up to the events safely visible
    /// now), with a [`LogEntry::Through`](crate::store::LogEntry::Through) wherever the reader may move its checkpoint past
    /// skipped events: at the latest at the end of the read, when the last events were
    /// skipped.
    ///
    /// The default implementation filters the events of `read_all` in the client. A store
    /// that can filter where the events are (in SQL, with an index) reads less.
    fn read_log(&self, after: Position, filter: &LogFilter) -> LogStream<'_> {
        filter_in_client(self.read_all(after), filter.clone())
    }

    /// What a fold of `stream` up to version `to` needs: with `snapshot` a key, the stream's
    /// snapshot of that key first if its version lies in `from..=to`, then the events after
    /// the snapshot's version up to `to`; otherwise the events with versions `from..=to`.
    /// The events carry only what a fold needs (no position, metadata or recorded time).
    ///
    /// The default implementation makes two reads ([`load_snapshot`](EventStore::load_snapshot),
    /// then [`read_stream`](EventStore::read_stream)); a store may read less, in one round
    /// trip. A store that wraps another should forward this method too, or its reads lose the
    /// inner store's narrower query.
    fn read_for_fold(
        &self,
        stream: &StreamId,
        from: Version,
        to: Version,
        snapshot: Option<SnapshotKey>,
    ) -> FoldStream<'_> {
        use futures_util::StreamExt;
        let stream = stream.clone();
        Box::pin(
            futures_util::stream::once(async move {
                let snapshot = match snapshot {
                    Some(key) => self
                        .load_snapshot(&stream, key)
                        .await?
                        .filter(|s| (from..=to).contains(&s.version)),
                    None => None,
                };
                let from = snapshot.as_ref().map_or(from, |s| s.version + 1);
                let head = futures_util::stream::iter(snapshot.map(|s| Ok(FoldItem::Snapshot(s))));
                let tail = self
                    .read_stream(&stream, from, to)
                    .map(|e| e.map(|e| FoldItem::Event(e.into())));
                Ok::<_, crate::Error>(head.chain(tail))
            })
            .map(|r| match r {
                Ok(s) => s.left_stream(),
                Err(e) => futures_util::stream::once(async move { Err(e) }).right_stream(),
            })
            .flatten(),
        )
    }

    /// Stores `snapshot` under its key: the stream, the [`SnapshotKey`] (snapshot version
    /// and fold fingerprint) it was written with.
    ///
    /// Every store follows the rule of [`keep_snapshot`](crate::store::keep_snapshot): a stream keeps
    /// at most one snapshot per key; `snapshot` replaces the one of its key only if it is of a
    /// higher stream version (an older or equal one changes nothing); then the stream keeps
    /// the snapshot of this key and those of the
    /// [`SNAPSHOT_KEYS_PER_STREAM`](crate::store::SNAPSHOT_KEYS_PER_STREAM)` - 1` other keys saved
    /// most recently, and drops the rest. So two versions of a program whose folds differ
    /// each keep their own snapshot, and keys whose code is gone are pruned.
    fn save_snapshot(&self, snapshot: Snapshot) -> impl Future<Output = Result<()>> + Send;

    /// The snapshot of `stream` kept for `key` (the newest saved with it, unless pruned by
    /// [`save_snapshot`](EventStore::save_snapshot)), if any.
    fn load_snapshot(
        &self,
        stream: &StreamId,
        key: SnapshotKey,
    ) -> impl Future<Output = Result<Option<Snapshot>>> + Send;

    /// Deletes every snapshot of `stream`, whatever its key. Snapshots are only an
    /// optimisation, so loads return the same states after it; forgetting a subject's
    /// personal data ([`personal::forget`](crate::personal::forget)) uses it, because a
    /// snapshot holds the state in clear. The default refuses with [`Error::Backend`](crate::Error::Backend):
    /// a store that can keep snapshots should override it.
    fn delete_snapshots(&self, stream: &StreamId) -> impl Future<Output = Result<()>> + Send {
        let stream = stream.clone();
        async move {
            Err(crate::Error::Backend {
                source: format!(
                    "this store cannot delete the snapshots of `{stream}`, which forgetting personal data needs"
                )
                .into(),
            })
        }
    }

    /// What the store remembers of the append made with `key`: its outcome and request
    /// digest, or `None` if no append was made with it or the key is older than the store's
    /// retention (see the [`idempotency`](crate::store::IdempotencyRecord) rule). Decide what a
    /// repeat gets with [`IdempotencyRecord::replay`].
    fn find_idempotency_key(
        &self,
        key: &IdempotencyKey,
    ) -> impl Future<Output = Result<Option<IdempotencyRecord>>> + Send;

    /// The current version of `stream` (0 when it does not exist).
    fn stream_version(&self, stream: &StreamId) -> impl Future<Output = Result<Version>> + Send;

    /// The position of the last event in the global log, if the store can tell cheaply;
    /// projection runners report their lag against it. The default says `None`.
    fn head_position(&self) -> impl Future<Output = Result<Option<Position>>> + Send {
        async { Ok(None) }
    }

    /// Waits until events after `after` may be readable, or `timeout` passes, whichever comes
    /// first. Spurious wake-ups are allowed; the default implementation just sleeps.
    fn wait_for_events(
        &self,
        after: Position,
        timeout: Duration,
    ) -> impl Future<Output = Result<()>> + Send {
        let _ = after;
        async move {
            tokio::time::sleep(timeout).await;
            Ok(())
        }
    }
}

impl<S: EventStore> EventStore for std::sync::Arc<S> {
    fn append(&self, request: AppendRequest) -> impl Future<Output = Result<AppendOutcome>> + Send {
        (**self).append(request)
    }
    fn read_stream(&self, stream: &StreamId, from: Version, to: Version) -> EventStream<'_> {
        (**self).read_stream(stream, from, to)
    }
    fn read_all(&self, after: Position) -> EventStream<'_> {
        (**self).read_all(after)
    }
    fn read_log(&self, after: Position, filter: &LogFilter) -> LogStream<'_> {
        (**self).read_log(after, filter)
    }
    fn read_for_fold(
        &self,
        stream: &StreamId,
        from: Version,
        to: Version,
        snapshot: Option<SnapshotKey>,
    ) -> FoldStream<'_> {
        (**self).read_for_fold(stream, from, to, snapshot)
    }
    fn save_snapshot(&self, snapshot: Snapshot) -> impl Future<Output = Result<()>> + Send {
        (**self).save_snapshot(snapshot)
    }
    fn load_snapshot(
        &self,
        stream: &StreamId,
        key: SnapshotKey,
    ) -> impl Future<Output = Result<Option<Snapshot>>> + Send {
        (**self).load_snapshot(stream, key)
    }
    fn delete_snapshots(&self, stream: &StreamId) -> impl Future<Output = Result<()>> + Send {
        (**self).delete_snapshots(stream)
    }
    fn find_idempotency_key(
        &self,
        key: &IdempotencyKey,
    ) -> impl Future<Output = Result<Option<IdempotencyRecord>>> + Send {
        (**self).find_idempotency_key(key)
    }
    fn stream_version(&self, stream: &StreamId) -> impl Future<Output = Result<Version>> + Send {
        (**self).stream_version(stream)
    }
    fn wait_for_events(
        &self,
        after: Position,
        timeout: Duration,
    ) -> impl Future<Output = Result<()>> + Send {
        (**self).wait_for_events(after, timeout)
    }
    fn head_position(&self) -> impl Future<Output = Result<Option<Position>>> + Send {
        (**self).head_position()
    }
}
