//! The in-memory event store.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::envelope::{AppendOutcome, AppendRequest, FoldEvent, RecordedEvent};
use crate::error::{Conflict, Result};
use crate::idempotency::IdempotencyKey;
use crate::idempotency::{DEFAULT_IDEMPOTENCY_RETENTION, IdempotencyRecord};
use crate::metrics::{AppendMetrics, AppendResult};
use crate::position::Position;
use crate::snapshot::{Snapshot, SnapshotKey};
use crate::store::{DEFAULT_MAX_PAYLOAD_BYTES, EventStore, EventStream, FoldItem, FoldStream};
use crate::stream::{StreamId, Version};

/// The append metrics of the in-memory store: `store = "memory"`.
static METRICS: AppendMetrics = AppendMetrics::new("memory");

/// How many events a reader copies out per lock.
const READ_CHUNK: usize = 256;

/// An event store held in memory: fast, fully featured, and gone when the process ends.
///
/// It keeps every guarantee of [`EventStore`] (it passes the same conformance suite as the
/// PostgreSQL store), so it is the store of tests, examples and prototypes. Cloning it is
/// cheap and the clones share the events.
///
/// ```
/// # async fn demo() -> esrs_core::Result<()> {
/// use esrs_core::{EventStore, ExpectedVersion, InMemoryStore, StreamId};
/// use esrs_core::store::{AppendRequest, NewEvent};
///
/// let store = InMemoryStore::new();
/// let stream = StreamId::new("cart-1").unwrap();
/// let payload = serde_json::value::to_raw_value(&serde_json::json!({ "item": "book" })).unwrap();
/// let event = NewEvent::new("ItemAdded", 1, payload);
/// let outcome = store
///     .append(AppendRequest::new(stream, ExpectedVersion::NoStream, vec![event]))
///     .await?;
/// assert_eq!(outcome.last_version, 1);
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Clone)]
pub struct InMemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    appended: tokio::sync::Notify,
    max_payload_bytes: usize,
}

#[derive(Default)]
struct State {
    /// Every event, in global order.
    log: Vec<RecordedEvent>,
    /// For each stream, the indexes of its events in `log`, in version order.
    streams: HashMap<StreamId, Vec<usize>>,
    /// For each stream, its snapshots, one per key, the most recently saved first (see
    /// [`keep_snapshot`](crate::store::keep_snapshot)).
    snapshots: HashMap<StreamId, Vec<Snapshot>>,
    keys: HashMap<IdempotencyKey, KeptKey>,
    /// The keys by the time they were stored, oldest first, for the sweep of expired ones.
    key_ages: VecDeque<(Instant, IdempotencyKey)>,
    retention: Duration,
    commits: u64,
    /// The stored names of the events, one shared text per name.
    names: HashMap<&'static str, crate::store::EventName>,
}

/// An idempotency key's record and when it was stored.
struct KeptKey {
    record: IdempotencyRecord,
    stored: Instant,
}

impl State {
    /// The record of `key`, unless it has expired.
    fn live_key(&self, key: &IdempotencyKey, now: Instant) -> Option<&IdempotencyRecord> {
        self.keys
            .get(key)
            .filter(|kept| now.duration_since(kept.stored) < self.retention)
            .map(|kept| &kept.record)
    }

    /// Forgets the keys older than the retention; amortised over appends.
    fn sweep_keys(&mut self, now: Instant) {
        while let Some((stored, _)) = self.key_ages.front() {
            if now.duration_since(*stored) < self.retention {
                break;
            }
            let Some((stored, key)) = self.key_ages.pop_front() else {
                break;
            };
            // The key may have been stored again after it expired: keep the newer one.
            if self
                .keys
                .get(&key)
                .is_some_and(|kept| kept.stored == stored)
            {
                self.keys.remove(&key);
            }
        }
    }
}

impl std::fmt::Debug for InMemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("InMemoryStore")
            .field("events", &state.log.len())
            .field("streams", &state.streams.len())
            .field("max_payload_bytes", &self.inner.max_payload_bytes)
            .finish()
    }
}

impl Default for InMemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl InMemoryStore {
    /// An empty store with the default payload limit of 1 MiB.
    pub fn new() -> Self {
        Self::with_max_payload_bytes(DEFAULT_MAX_PAYLOAD_BYTES)
    }

    /// An empty store that refuses event payloads over `limit` bytes.
    pub fn with_max_payload_bytes(limit: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    retention: DEFAULT_IDEMPOTENCY_RETENTION,
                    ..State::default()
                }),
                appended: tokio::sync::Notify::new(),
                max_payload_bytes: limit,
            }),
        }
    }

    /// The number of events stored.
    pub fn len(&self) -> usize {
        self.lock().log.len()
    }

    /// Whether no event is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Deletes every snapshot. Snapshots are only an optimisation, so loads return the same
    /// states afterwards, only slower.
    pub fn clear_snapshots(&self) {
        self.lock().snapshots.clear();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-written: every
        // mutation below is made after all checks have passed.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps idempotency keys for `retention` instead of
    /// [`DEFAULT_IDEMPOTENCY_RETENTION`], in this store and its clones. An expired key is
    /// forgotten: a request that comes back with it is appended as a new one.
    pub fn with_idempotency_retention(self, retention: Duration) -> Self {
        self.lock().retention = retention;
        self
    }

    fn append_now(&self, request: AppendRequest) -> Result<AppendOutcome> {
        request.check(self.inner.max_payload_bytes)?;
        let digest = request.idempotency_key.as_ref().map(|_| request.digest());
        let mut state = self.lock();
        // The clock is read only when there are keys to compare or to sweep.
        let now =
            (request.idempotency_key.is_some() || !state.key_ages.is_empty()).then(Instant::now);
        if let Some(now) = now {
            state.sweep_keys(now);
        }
        if let (Some(key), Some(digest)) = (&request.idempotency_key, &digest) {
            let now = now.unwrap_or_else(Instant::now);
            if let Some(original) = state.live_key(key, now) {
                return original.clone().replay(key, &request.stream, digest);
            }
        }
        let current = state
            .streams
            .get(&request.stream)
            .map_or(0, |v| v.len() as Version);
        if !request.expected.matches(current) {
            return Err(Conflict::new(request.stream, request.expected, current).into());
        }
        let count = request.events.len() as u64;
        let mut positions = None;
        if count > 0 {
            state.commits += 1;
            let commit = state.commits;
            let now = chrono::Utc::now();
            let start = state.log.len();
            METRICS.record_payloads(request.events.iter().map(|e| e.payload.get().len()));
            for (i, event) in request.events.into_iter().enumerate() {
                let position = Position::new(commit, (start + i + 1) as u64);
                positions = Some((positions.map_or(position, |(first, _)| first), position));
                let name = state
                    .names
                    .entry(event.name)
                    .or_insert_with(|| event.name.into())
                    .clone();
                state.log.push(
                    RecordedEvent::new(
                        position,
                        request.stream.clone(),
                        current + i as Version + 1,
                        name,
                        event.schema_version,
                        event.payload,
                        request.metadata.clone(),
                        now,
                    )
                    .with_id(uuid::Uuid::new_v4()),
                );
            }
            let end = state.log.len();
            state
                .streams
                .entry(request.stream.clone())
                .or_default()
                .extend(start..end);
        }
        let outcome = AppendOutcome::appended(request.stream, current, count, positions);
        if let Some(key) = request.idempotency_key {
            let now = now.unwrap_or_else(Instant::now);
            state.key_ages.push_back((now, key.clone()));
            let record = IdempotencyRecord::new(outcome.clone(), digest);
            state.keys.insert(
                key,
                KeptKey {
                    record,
                    stored: now,
                },
            );
        }
        drop(state);
        self.inner.appended.notify_waiters();
        Ok(outcome)
    }

    /// Copies up to a chunk of the stream's events with versions in `from..=to`.
    fn stream_chunk(&self, stream: &StreamId, from: Version, to: Version) -> Vec<RecordedEvent> {
        let state = self.lock();
        let Some(indexes) = state.streams.get(stream) else {
            return Vec::new();
        };
        let start = from.max(1) - 1;
        let end = to.min(indexes.len() as Version);
        if start >= end {
            return Vec::new();
        }
        let end = end.min(start + READ_CHUNK as Version);
        indexes[start as usize..end as usize]
            .iter()
            .map(|&i| state.log[i].clone())
            .collect()
    }

    /// Copies, in one lock, what a fold of the stream needs: the snapshot of `key` if its
    /// version lies in `from..=to`, then up to a chunk of the events after it (or from
    /// `from`) up to `to`, with only the fields a fold reads.
    fn fold_chunk(
        &self,
        stream: &StreamId,
        from: Version,
        to: Version,
        key: Option<SnapshotKey>,
    ) -> (Option<Snapshot>, Vec<FoldEvent>) {
        let state = self.lock();
        let snapshot = key.and_then(|key| {
            state
                .snapshots
                .get(stream)
                .and_then(|kept| kept.iter().find(|s| s.key == key))
                .filter(|s| (from..=to).contains(&s.version))
                .cloned()
        });
        let from = snapshot.as_ref().map_or(from, |s| s.version + 1);
        let Some(indexes) = state.streams.get(stream) else {
            return (snapshot, Vec::new());
        };
        let start = from.max(1) - 1;
        let end = to.min(indexes.len() as Version);
        if start >= end {
            return (snapshot, Vec::new());
        }
        let end = end.min(start + READ_CHUNK as Version);
        let events = indexes[start as usize..end as usize]
            .iter()
            .map(|&i| {
                let e = &state.log[i];
                FoldEvent::new(
                    e.version,
                    e.name.clone(),
                    e.schema_version,
                    e.payload.clone(),
                )
            })
            .collect();
        (snapshot, events)
    }

    /// Copies up to a chunk of the global log after `after`.
    fn log_chunk(&self, after: Position) -> Vec<RecordedEvent> {
        let state = self.lock();
        // Positions in the log are in increasing order: the first event after `after` is
        // found by a binary search.
        let start = state.log.partition_point(|e| e.position <= after);
        let end = state.log.len().min(start + READ_CHUNK);
        state.log[start..end].to_vec()
    }
}

impl EventStore for InMemoryStore {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome> {
        let span = tracing::debug_span!(
            "esrs.append",
            store = "memory",
            stream = %request.stream,
            events = request.events.len(),
            expected = %request.expected,
        );
        let _entered = span.enter();
        let started = Instant::now();
        let events = request.events.len();
        let result = self.append_now(request);
        METRICS.record(AppendResult::of(&result), events, started.elapsed());
        result
    }

    fn read_stream(&self, stream: &StreamId, from: Version, to: Version) -> EventStream<'_> {
        let stream = stream.clone();
        Box::pin(futures_util::stream::unfold(
            (from.max(1), Vec::<RecordedEvent>::new().into_iter()),
            move |(next, mut buffered)| {
                let stream = stream.clone();
                async move {
                    if let Some(e) = buffered.next() {
                        return Some((Ok(e), (next, buffered)));
                    }
                    let chunk = self.stream_chunk(&stream, next, to);
                    let next = next + chunk.len() as Version;
                    let mut chunk = chunk.into_iter();
                    let first = chunk.next()?;
                    Some((Ok(first), (next, chunk)))
                }
            },
        ))
    }

    fn read_for_fold(
        &self,
        stream: &StreamId,
        from: Version,
        to: Version,
        snapshot: Option<SnapshotKey>,
    ) -> FoldStream<'_> {
        // The snapshot and the first chunk in one lock, then chunk by chunk, copying only
        // what a fold reads.
        let stream = stream.clone();
        Box::pin(futures_util::stream::unfold(
            (from, snapshot, true, Vec::<FoldEvent>::new().into_iter()),
            move |(next, key, first, mut buffered)| {
                let stream = stream.clone();
                async move {
                    if let Some(e) = buffered.next() {
                        return Some((Ok(FoldItem::Event(e)), (next, key, false, buffered)));
                    }
                    let (snapshot, chunk) =
                        self.fold_chunk(&stream, next, to, if first { key } else { None });
                    let start = snapshot.as_ref().map_or(next, |s| s.version + 1).max(1);
                    let next = start + chunk.len() as Version;
                    let mut chunk = chunk.into_iter();
                    if let Some(snapshot) = snapshot {
                        return Some((
                            Ok(FoldItem::Snapshot(snapshot)),
                            (next, None, false, chunk),
                        ));
                    }
                    let event = chunk.next()?;
                    Some((Ok(FoldItem::Event(event)), (next, None, false, chunk)))
                }
            },
        ))
    }

    fn read_all(&self, after: Position) -> EventStream<'_> {
        Box::pin(futures_util::stream::unfold(
            (after, Vec::<RecordedEvent>::new().into_iter()),
            move |(after, mut buffered)| async move {
                if let Some(e) = buffered.next() {
                    let position = e.position;
                    return Some((Ok(e), (position, buffered)));
                }
                let mut chunk = self.log_chunk(after).into_iter();
                let first = chunk.next()?;
                let position = first.position;
                Some((Ok(first), (position, chunk)))
            },
        ))
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<()> {
        let mut state = self.lock();
        let kept = state.snapshots.entry(snapshot.stream.clone()).or_default();
        crate::store::keep_snapshot(kept, snapshot);
        Ok(())
    }

    async fn load_snapshot(&self, stream: &StreamId, key: SnapshotKey) -> Result<Option<Snapshot>> {
        Ok(self
            .lock()
            .snapshots
            .get(stream)
            .and_then(|kept| kept.iter().find(|s| s.key == key))
            .cloned())
    }

    async fn delete_snapshots(&self, stream: &StreamId) -> Result<()> {
        self.lock().snapshots.remove(stream);
        Ok(())
    }

    async fn find_idempotency_key(
        &self,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotencyRecord>> {
        Ok(self.lock().live_key(key, Instant::now()).cloned())
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Version> {
        Ok(self
            .lock()
            .streams
            .get(stream)
            .map_or(0, |v| v.len() as Version))
    }

    async fn head_position(&self) -> Result<Option<Position>> {
        Ok(self.lock().log.last().map(|e| e.position))
    }

    async fn wait_for_events(&self, after: Position, timeout: Duration) -> Result<()> {
        let notified = self.inner.appended.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let head = self.lock().log.last().map(|e| e.position);
        if head.is_some_and(|h| h > after) {
            return Ok(());
        }
        let _ = tokio::time::timeout(timeout, notified).await;
        Ok(())
    }
}
