//! The relay: a [`Projection`] that publishes every event of the global log to JetStream,
//! and the [`Outbox`] checkpoint store that saves its checkpoint only once JetStream has
//! acknowledged every event of the batch.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishAckFuture};
use bytes::Bytes;
use esrs_core::projection::{CheckpointError, CheckpointStore, ProjectionEvents};
use esrs_core::{BoxError, DecodeError, Position, Projection, RecordedEvent, StreamId, Version};
use tracing::Instrument as _;

use crate::error::RelayError;
use crate::{headers, subject};

/// The default name of the relay's checkpoint (and lock): `esrs-nats-relay`.
pub const DEFAULT_RELAY_NAME: &str = "esrs-nats-relay";
/// The default subject prefix: `esrs`.
pub const DEFAULT_PREFIX: &str = "esrs";
/// The default duplicate window the relay counts on: two minutes, JetStream's own default.
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

type SubjectFn = dyn Fn(&RecordedEvent) -> String + Send + Sync;

/// What the relay reads of an event: nothing, it publishes the payload as stored. Handles
/// every stored name and decodes none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Undecoded;

impl ProjectionEvents for Undecoded {
    fn handles(_name: &str) -> bool {
        true
    }

    fn decode(_record: &RecordedEvent) -> Result<Self, DecodeError> {
        Ok(Undecoded)
    }
}

/// Publishes every event of the store's global log to a JetStream stream, exactly once.
///
/// The relay is a [`Projection`]: run it with the ordinary [`ProjectionRunner`](esrs_core::ProjectionRunner)
/// over the store and an [`Outbox`] around the store's checkpoints, and it inherits the
/// runner's checkpoint, its lock (one relay per store across processes, with takeover),
/// its error policy and its live following of the log. See the [crate docs](crate).
///
/// Each event goes to [`default_subject`](subject::default_subject)
/// (`<prefix>.<aggregate>.<stream id>`) or the subject of [`RelayBuilder::subject_fn`],
/// with the [`headers`] of its envelope and `Nats-Msg-Id` `<stream id>/<version>`.
#[derive(Clone)]
pub struct Relay {
    jetstream: jetstream::Context,
    name: String,
    prefix: String,
    subject: Option<Arc<SubjectFn>>,
}

impl fmt::Debug for Relay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Relay")
            .field("name", &self.name)
            .field("prefix", &self.prefix)
            .field("subject_fn", &self.subject.is_some())
            .finish_non_exhaustive()
    }
}

/// Configures a [`Relay`]; [`build`](Self::build) checks the JetStream stream.
pub struct RelayBuilder {
    jetstream: jetstream::Context,
    stream: String,
    name: String,
    prefix: String,
    subject: Option<Arc<SubjectFn>>,
    duplicate_window: Duration,
}

impl fmt::Debug for RelayBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayBuilder")
            .field("stream", &self.stream)
            .field("name", &self.name)
            .field("prefix", &self.prefix)
            .field("subject_fn", &self.subject.is_some())
            .field("duplicate_window", &self.duplicate_window)
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// A relay into the JetStream stream named `stream` (which must exist and take the
    /// relay's subjects). Defaults: checkpoint name [`DEFAULT_RELAY_NAME`], prefix
    /// [`DEFAULT_PREFIX`], duplicate window [`DEFAULT_DUPLICATE_WINDOW`].
    pub fn builder(jetstream: jetstream::Context, stream: impl Into<String>) -> RelayBuilder {
        RelayBuilder {
            jetstream,
            stream: stream.into(),
            name: DEFAULT_RELAY_NAME.to_owned(),
            prefix: DEFAULT_PREFIX.to_owned(),
            subject: None,
            duplicate_window: DEFAULT_DUPLICATE_WINDOW,
        }
    }

    /// The subject `record` is published to.
    pub fn subject(&self, record: &RecordedEvent) -> String {
        match &self.subject {
            Some(f) => f(record),
            None => subject::default_subject(&self.prefix, record.stream.as_str()),
        }
    }
}

impl RelayBuilder {
    /// Sets the name the relay's checkpoint and lock are stored under. Two relays of one
    /// store into two JetStream streams need two names.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the first tokens of the default subject (`<prefix>.<aggregate>.<stream id>`).
    pub fn subject_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Publishes each event to the subject `f` returns instead of the default. The
    /// subject must be a valid NATS subject taken by the stream; events of one stream id
    /// should go to one subject, so that their order holds on it.
    pub fn subject_fn(
        mut self,
        f: impl Fn(&RecordedEvent) -> String + Send + Sync + 'static,
    ) -> Self {
        self.subject = Some(Arc::new(f));
        self
    }

    /// Sets the longest time within which the relay may send an event again after its
    /// first send: a crash between a publish and its checkpoint, and the restart (or the
    /// takeover by another process) that follows, plus the runner's retries, must fit in
    /// it. [`build`](Self::build) refuses a JetStream stream whose `duplicate_window` is
    /// shorter.
    pub fn duplicate_window(mut self, window: Duration) -> Self {
        self.duplicate_window = window;
        self
    }

    /// Checks the JetStream stream (it exists; its duplicate window is at least the
    /// relay's) and returns the relay.
    pub async fn build(self) -> Result<Relay, RelayError> {
        let info_error = |source: BoxError| RelayError::StreamInfo {
            stream: self.stream.clone(),
            source,
        };
        let mut stream = self
            .jetstream
            .get_stream(&self.stream)
            .await
            .map_err(|e| info_error(Box::new(e)))?;
        let info = stream.info().await.map_err(|e| info_error(Box::new(e)))?;
        let stream_window = info.config.duplicate_window;
        if stream_window < self.duplicate_window {
            return Err(RelayError::DuplicateWindowTooShort {
                stream: self.stream,
                stream_window,
                relay_window: self.duplicate_window,
            });
        }
        Ok(Relay {
            jetstream: self.jetstream,
            name: self.name,
            prefix: self.prefix,
            subject: self.subject,
        })
    }
}

/// An event ready to go to JetStream: its subject, headers and payload, and its identity
/// for error reports.
struct Message {
    subject: String,
    headers: HeaderMap,
    payload: Bytes,
    stream: StreamId,
    version: Version,
    position: Position,
}

impl Message {
    fn of(subject: String, record: &RecordedEvent) -> Self {
        Self {
            subject,
            headers: headers::encode(record),
            payload: Bytes::copy_from_slice(record.payload().as_bytes()),
            stream: record.stream.clone(),
            version: record.version,
            position: record.position,
        }
    }

    /// Hands the message to the client; the returned future resolves with JetStream's
    /// acknowledgement.
    async fn publish(self, jetstream: &jetstream::Context) -> Result<PendingAck, RelayError> {
        let span = tracing::trace_span!(
            "esrs_nats.relay.publish",
            subject = %self.subject,
            position = %self.position
        );
        match jetstream
            .publish_with_headers(self.subject.clone(), self.headers, self.payload)
            .instrument(span)
            .await
        {
            Ok(ack) => Ok(PendingAck {
                ack,
                subject: self.subject,
                stream: self.stream,
                version: self.version,
                position: self.position,
            }),
            Err(e) => Err(RelayError::Publish {
                subject: self.subject,
                stream: self.stream,
                version: self.version,
                position: self.position,
                source: Box::new(e),
            }),
        }
    }
}

/// A publish whose acknowledgement is awaited before the checkpoint moves.
struct PendingAck {
    ack: PublishAckFuture,
    subject: String,
    stream: StreamId,
    version: Version,
    position: Position,
}

/// The unit of work of an [`Outbox`]: the inner store's, the acknowledgements of the
/// events published in it, and the events held back until an earlier event of their
/// subject is acknowledged.
///
/// At most one event per subject is unacknowledged at any time. Publishes to different
/// subjects are pipelined (one round trip for all of them), but an event whose subject
/// already has one in flight waits for that acknowledgement: if a connection drop lost
/// the first while the second got through, a retry would store them in the wrong order
/// on the subject. Holding the second back keeps per-stream order on the subject under
/// every fault, at the price of one round trip per event of a stream within a batch.
pub struct OutboxTx<T> {
    inner: T,
    jetstream: Option<jetstream::Context>,
    pending: Vec<PendingAck>,
    in_flight: HashSet<String>,
    held: Vec<Message>,
}

impl<T> fmt::Debug for OutboxTx<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxTx")
            .field("pending_acks", &self.pending.len())
            .field("held_back", &self.held.len())
            .finish_non_exhaustive()
    }
}

impl<T> OutboxTx<T> {
    /// The inner checkpoint store's unit of work.
    pub fn inner(&mut self) -> &mut T {
        &mut self.inner
    }

    /// How many publishes await their acknowledgement.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// How many events wait, unpublished, for the acknowledgement of an earlier event of
    /// their subject; they are published when the batch settles.
    pub fn held_back(&self) -> usize {
        self.held.len()
    }

    /// Publishes `message` now, or holds it back while its subject has one in flight.
    async fn send(
        &mut self,
        jetstream: &jetstream::Context,
        message: Message,
    ) -> Result<(), RelayError> {
        if self.in_flight.contains(&message.subject) {
            if self.jetstream.is_none() {
                self.jetstream = Some(jetstream.clone());
            }
            self.held.push(message);
            return Ok(());
        }
        let pending = message.publish(jetstream).await?;
        self.in_flight.insert(pending.subject.clone());
        self.pending.push(pending);
        Ok(())
    }

    /// Awaits every acknowledgement, in publish order, then publishes the held-back
    /// events in rounds (the first held event of each subject per round, in log order)
    /// until none is left; the first failure fails the batch.
    async fn settle(&mut self) -> Result<(), CheckpointError> {
        if self.pending.is_empty() && self.held.is_empty() {
            return Ok(());
        }
        let span = tracing::debug_span!(
            "esrs_nats.relay.acks",
            count = tracing::field::Empty,
            rounds = tracing::field::Empty,
            duplicates = tracing::field::Empty
        );
        async {
            let (mut count, mut rounds, mut duplicates) = (0u64, 0u64, 0u64);
            loop {
                rounds += 1;
                for pending in self.pending.drain(..) {
                    count += 1;
                    match pending.ack.await {
                        Ok(ack) => duplicates += u64::from(ack.duplicate),
                        Err(e) => {
                            return Err(CheckpointError::Backend(Box::new(RelayError::Ack {
                                stream: pending.stream,
                                version: pending.version,
                                position: pending.position,
                                source: Box::new(e),
                            })));
                        }
                    }
                }
                self.in_flight.clear();
                if self.held.is_empty() {
                    break;
                }
                let jetstream = self
                    .jetstream
                    .clone()
                    .expect("held-back events come with the context that publishes them");
                for message in std::mem::take(&mut self.held) {
                    self.send(&jetstream, message)
                        .await
                        .map_err(|e| CheckpointError::Backend(Box::new(e)))?;
                }
            }
            let span = tracing::Span::current();
            span.record("count", count);
            span.record("rounds", rounds);
            span.record("duplicates", duplicates);
            if duplicates > 0 {
                tracing::info!(duplicates, "JetStream dropped re-sent events as duplicates");
            }
            Ok(())
        }
        .instrument(span)
        .await
    }
}

/// A [`CheckpointStore`] around another one that saves the relay's checkpoint only after
/// JetStream has acknowledged every event the batch published.
///
/// Its [`save`](CheckpointStore::save) first awaits the batch's acknowledgements and
/// fails the batch if one fails, so the checkpoint never passes an event JetStream has not
/// stored; then it saves in the inner store. Publishes to different subjects are
/// pipelined, one event per subject at a time (see [`OutboxTx`]): a batch costs one round
/// trip per event of its busiest stream, not one per event. Loads, commits and locks are the inner store's: over
/// `PgCheckpoints`, one relay runs per store across processes, and another takes over
/// when it dies.
#[derive(Debug, Clone)]
pub struct Outbox<C> {
    inner: C,
}

impl<C> Outbox<C> {
    /// Wraps `checkpoints`.
    pub fn new(checkpoints: C) -> Self {
        Self { inner: checkpoints }
    }

    /// The inner checkpoint store.
    pub fn inner(&self) -> &C {
        &self.inner
    }
}

impl<C: CheckpointStore> CheckpointStore for Outbox<C> {
    type Tx = OutboxTx<C::Tx>;
    type Lock = C::Lock;

    async fn load(&self, projection: &str) -> Result<Position, CheckpointError> {
        self.inner.load(projection).await
    }

    async fn begin(&self) -> Result<Self::Tx, CheckpointError> {
        Ok(OutboxTx {
            inner: self.inner.begin().await?,
            jetstream: None,
            pending: Vec::new(),
            in_flight: HashSet::new(),
            held: Vec::new(),
        })
    }

    async fn save(
        &self,
        tx: &mut Self::Tx,
        lock: &Self::Lock,
        projection: &str,
        from: Position,
        to: Position,
    ) -> Result<(), CheckpointError> {
        tx.settle().await?;
        self.inner
            .save(&mut tx.inner, lock, projection, from, to)
            .await
    }

    async fn commit(&self, mut tx: Self::Tx) -> Result<(), CheckpointError> {
        tx.settle().await?;
        self.inner.commit(tx.inner).await
    }

    async fn try_lock(&self, projection: &str) -> Result<Option<Self::Lock>, CheckpointError> {
        self.inner.try_lock(projection).await
    }

    async fn unlock(&self, lock: Self::Lock) -> Result<(), CheckpointError> {
        self.inner.unlock(lock).await
    }
}

impl<T: Send> Projection<OutboxTx<T>> for Relay {
    type Event = Undecoded;

    fn name(&self) -> &str {
        &self.name
    }

    async fn handle(
        &mut self,
        tx: &mut OutboxTx<T>,
        _event: Undecoded,
        record: &RecordedEvent,
    ) -> Result<(), BoxError> {
        let message = Message::of(self.subject(record), record);
        tx.send(&self.jetstream, message).await?;
        Ok(())
    }
}
