//! The consumer: feeds a [`Projection`] from a JetStream stream, in another process, with
//! the checkpoint kept beside the read model.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::AckPolicy, consumer::DeliverPolicy, consumer::pull};
use esrs_core::projection::{CheckpointStore, ProjectionError, ProjectionEvents};
use esrs_core::{BoxError, Position, Projection};
use futures_util::StreamExt as _;
use tracing::Instrument as _;

use crate::error::ConsumerError;
use crate::headers;

/// The default number of messages per read-model transaction.
pub const DEFAULT_CONSUMER_BATCH: usize = 500;
/// The default pause before fetching again when the stream had nothing new.
pub const DEFAULT_IDLE_WAIT: Duration = Duration::from_millis(20);

/// Feeds a [`Projection`] from the messages a [`Relay`](crate::Relay) published, with an
/// exactly-once effect for a transactional read model.
///
/// The checkpoint is the JetStream stream sequence of the last message handled, saved as
/// `Position::new(0, stream_sequence)` in the [`CheckpointStore`] whose unit of work the
/// read model writes in (`PgCheckpoints` for a PostgreSQL read model, in a database or
/// schema of its own). A batch goes: fetch up to [`batch_size`](Self::batch_size)
/// messages, begin, rebuild each message's [`RecordedEvent`](esrs_core::RecordedEvent)
/// from its headers and payload, decode and handle it (a message at or below the
/// checkpoint is skipped), save the checkpoint, commit, then acknowledge to JetStream.
///
/// The JetStream consumer is created by the helper from the saved checkpoint
/// (`DeliverPolicy::ByStartSequence` at the next sequence), and again after any failure:
/// the read model's own checkpoint, committed with its writes, is the one record of how far
/// it got, so a crash at any point (before the commit, between the commit and the ack)
/// neither loses a message nor applies one twice, and the messages are always handled in
/// stream order. The consumer is deleted by JetStream once unused for a minute.
///
/// One consumer per projection name runs at a time: it holds the checkpoint store's lock.
pub struct JetStreamProjection<C: CheckpointStore, P> {
    stream: jetstream::stream::Stream,
    stream_name: String,
    checkpoints: C,
    projection: P,
    name: String,
    filter_subject: String,
    batch_size: usize,
    idle_wait: Duration,
}

impl<C: CheckpointStore, P> std::fmt::Debug for JetStreamProjection<C, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamProjection")
            .field("stream", &self.stream_name)
            .field("projection", &self.name)
            .field("filter_subject", &self.filter_subject)
            .field("batch_size", &self.batch_size)
            .field("idle_wait", &self.idle_wait)
            .finish_non_exhaustive()
    }
}

/// How a [`JetStreamProjection::catch_up`] or [`run_until`](JetStreamProjection::run_until) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerProgress {
    /// The checkpoint: the stream sequence of the last message handled.
    pub checkpoint: Position,
    /// Messages read in this call (redelivered ones included).
    pub handled: u64,
}

impl<C, P> JetStreamProjection<C, P>
where
    C: CheckpointStore,
    P: Projection<C::Tx>,
{
    /// Feeds `projection` from `stream` (every subject; narrow it with
    /// [`filter_subject`](Self::filter_subject)), with its checkpoint in `checkpoints`.
    pub fn new(stream: jetstream::stream::Stream, checkpoints: C, projection: P) -> Self {
        let stream_name = stream.cached_info().config.name.clone();
        Self {
            stream,
            stream_name,
            checkpoints,
            name: projection.name().to_owned(),
            projection,
            filter_subject: String::new(),
            batch_size: DEFAULT_CONSUMER_BATCH,
            idle_wait: DEFAULT_IDLE_WAIT,
        }
    }

    /// Reads only the messages whose subject matches `subject` (wildcards allowed, e.g.
    /// `esrs.invoice.>`).
    pub fn filter_subject(mut self, subject: impl Into<String>) -> Self {
        self.filter_subject = subject.into();
        self
    }

    /// Sets the number of messages per read-model transaction (at least 1).
    pub fn batch_size(mut self, messages: usize) -> Self {
        self.batch_size = messages.max(1);
        self
    }

    /// Sets the pause before fetching again when the stream had nothing new (a fetch
    /// returns at once with what the stream holds): the longest extra latency of a
    /// message that arrives while the consumer is idle.
    pub fn idle_wait(mut self, wait: Duration) -> Self {
        self.idle_wait = wait;
        self
    }

    /// The projection.
    pub fn projection(&self) -> &P {
        &self.projection
    }

    /// The projection, consuming the helper.
    pub fn into_projection(self) -> P {
        self.projection
    }

    /// The checkpoint store.
    pub fn checkpoints(&self) -> &C {
        &self.checkpoints
    }

    /// Handles every message in the stream now, then returns.
    pub async fn catch_up(&mut self) -> Result<ConsumerProgress, ConsumerError> {
        self.run_inner(std::future::pending(), true).await
    }

    /// Takes the lock, runs batches until `stop` completes (or, `until_idle`, until a
    /// fetch brings nothing), gives the lock back.
    async fn run_inner(
        &mut self,
        stop: impl Future<Output = ()>,
        until_idle: bool,
    ) -> Result<ConsumerProgress, ConsumerError> {
        let lock = self
            .checkpoints
            .try_lock(&self.name)
            .await
            .map_err(|source| self.checkpoint_error(source))?
            .ok_or_else(|| ConsumerError::AlreadyRunning {
                projection: self.name.clone(),
            })?;
        let result = self.run_locked(&lock, stop, until_idle).await;
        if let Err(error) = self.checkpoints.unlock(lock).await {
            tracing::warn!(projection = %self.name, %error, "failed to release the projection lock");
        }
        result
    }

    /// Follows the stream until `stop` completes, then returns after the batch in hand.
    pub async fn run_until(
        &mut self,
        stop: impl Future<Output = ()>,
    ) -> Result<ConsumerProgress, ConsumerError> {
        self.run_inner(stop, false).await
    }

    fn checkpoint_error(&self, source: esrs_core::projection::CheckpointError) -> ConsumerError {
        ConsumerError::Checkpoint {
            projection: self.name.clone(),
            source,
        }
    }

    fn fetch_error(&self, source: impl Into<BoxError>) -> ConsumerError {
        ConsumerError::Fetch {
            projection: self.name.clone(),
            stream: self.stream_name.clone(),
            source: source.into(),
        }
    }

    async fn run_locked(
        &mut self,
        lock: &C::Lock,
        stop: impl Future<Output = ()>,
        until_idle: bool,
    ) -> Result<ConsumerProgress, ConsumerError> {
        let mut checkpoint = self
            .checkpoints
            .load(&self.name)
            .await
            .map_err(|source| self.checkpoint_error(source))?;
        let consumer = self
            .stream
            .create_consumer(pull::Config {
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: checkpoint.sequence + 1,
                },
                ack_policy: AckPolicy::All,
                filter_subject: self.filter_subject.clone(),
                inactive_threshold: Duration::from_secs(60),
                max_ack_pending: -1,
                ..Default::default()
            })
            .await
            .map_err(|e| self.fetch_error(e))?;
        let consumer_name = consumer.cached_info().name.clone();
        let mut handled = 0u64;
        let mut stop = std::pin::pin!(stop);
        let result = loop {
            if futures_util::FutureExt::now_or_never(stop.as_mut()).is_some() {
                break Ok(());
            }
            match self.batch(&consumer, lock, &mut checkpoint).await {
                Ok(0) if until_idle => break Ok(()),
                Ok(0) => {
                    tokio::select! {
                        () = tokio::time::sleep(self.idle_wait) => {}
                        () = stop.as_mut() => break Ok(()),
                    }
                }
                Ok(n) => handled += n,
                Err(e) => break Err(e),
            }
        };
        // The consumer would go after its inactive threshold anyway.
        let _ = self.stream.delete_consumer(&consumer_name).await;
        result.map(|()| ConsumerProgress {
            checkpoint,
            handled,
        })
    }

    /// One batch; returns the number of messages fetched (0 when none came).
    async fn batch(
        &mut self,
        consumer: &jetstream::consumer::Consumer<pull::Config>,
        lock: &C::Lock,
        checkpoint: &mut Position,
    ) -> Result<u64, ConsumerError> {
        let mut messages = consumer
            .fetch()
            .max_messages(self.batch_size)
            .expires(Duration::from_secs(5))
            .messages()
            .await
            .map_err(|e| self.fetch_error(e))?;
        let mut batch = Vec::with_capacity(self.batch_size.min(4096));
        while let Some(message) = messages.next().await {
            batch.push(message.map_err(|e| self.fetch_error(e))?);
        }
        if batch.is_empty() {
            return Ok(0);
        }
        let span = tracing::debug_span!("esrs_nats.consumer.batch", projection = %self.name, messages = batch.len());
        let mut tx = self
            .checkpoints
            .begin()
            .await
            .map_err(|source| self.checkpoint_error(source))?;
        let applied = async {
            let mut last = *checkpoint;
            for message in &batch {
                let sequence = message
                    .info()
                    .map_err(|e| self.fetch_error(e))?
                    .stream_sequence;
                if sequence <= last.sequence {
                    // Delivered again (after an ack was lost, or a redelivery): applied.
                    continue;
                }
                let record = headers::decode(message.headers.as_ref(), &message.payload).map_err(
                    |source| ConsumerError::Message {
                        projection: self.name.clone(),
                        sequence,
                        source,
                    },
                )?;
                if self.projection.handles(&record.name) {
                    let event = <P::Event as ProjectionEvents>::decode(&record).map_err(|e| {
                        ConsumerError::Projection(ProjectionError::decode(&self.name, &record, e))
                    })?;
                    esrs_core::projection::reacting_to(
                        &record,
                        self.projection.handle(&mut tx, event, &record),
                    )
                    .await
                    .map_err(|e| {
                        ConsumerError::Projection(ProjectionError::handler(&self.name, &record, e))
                    })?;
                }
                last = Position::new(0, sequence);
            }
            if last != *checkpoint {
                self.checkpoints
                    .save(&mut tx, lock, &self.name, *checkpoint, last)
                    .await
                    .map_err(|source| self.checkpoint_error(source))?;
            }
            Ok::<_, ConsumerError>(last)
        }
        .instrument(span.clone())
        .await;
        let last = match applied {
            Ok(last) => last,
            Err(error) => {
                // Abandoned now, so that its locks go before the failure is reported.
                self.checkpoints.rollback(tx).await;
                return Err(error);
            }
        };
        async {
            if last != *checkpoint {
                self.checkpoints
                    .commit(tx)
                    .await
                    .map_err(|source| self.checkpoint_error(source))?;
                *checkpoint = last;
            } else {
                self.checkpoints.rollback(tx).await;
            }
            // After the commit: a lost ack only means a redelivery, which is skipped.
            if let Some(message) = batch.last() {
                if let Err(error) = message.ack().await {
                    tracing::debug!(%error, "cannot acknowledge a batch; it will be skipped when redelivered");
                }
            }
            Ok(batch.len() as u64)
        }
        .instrument(span)
        .await
    }
}
