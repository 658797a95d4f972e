//! Publish the events of an esrs store to NATS JetStream, exactly once, and build read
//! models from them in other processes.
//!
//! The store is the outbox: the [`Relay`] follows the store's global log from a
//! checkpoint of its own and publishes each event to JetStream, so nothing is published
//! that did not commit, and nothing that committed is lost. On the other side, a
//! [`JetStreamProjection`] feeds an ordinary [`Projection`](esrs_core::Projection) from
//! the JetStream stream, with its checkpoint in the read model's own transaction.
//!
//! ```no_run
//! use std::time::Duration;
//! use esrs_core::ProjectionRunner;
//! use esrs_core::projection::ErrorPolicy;
//! use esrs_nats::{Outbox, Relay};
//! use esrs_postgres::{PgCheckpoints, PgStore};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = PgStore::connect("postgres://postgres@127.0.0.1:5432/test").await?;
//! let nats = async_nats::connect("127.0.0.1:4222").await?;
//! let jetstream = async_nats::jetstream::new(nats);
//! jetstream
//!     .get_or_create_stream(async_nats::jetstream::stream::Config {
//!         name: "ESRS".to_owned(),
//!         subjects: vec!["esrs.>".to_owned()],
//!         duplicate_window: Duration::from_secs(120),
//!         ..Default::default()
//!     })
//!     .await?;
//!
//! // Checks the stream's duplicate window against the relay's.
//! let relay = Relay::builder(jetstream, "ESRS").build().await?;
//! let running = ProjectionRunner::new(store.clone(), Outbox::new(PgCheckpoints::new(&store)), relay)
//!     .error_policy(ErrorPolicy::Retry { max: u32::MAX, backoff: Duration::from_millis(200) })
//!     .wait_for_lock(Duration::from_secs(1))
//!     .spawn();
//! // … every committed event reaches `esrs.<aggregate>.<stream id>` …
//! running.stop().await?;
//! # Ok(()) }
//! ```
//!
//! # Exactly once into JetStream
//!
//! - The relay is a [`Projection`](esrs_core::Projection) run by the ordinary
//!   [`ProjectionRunner`](esrs_core::ProjectionRunner). Its checkpoint store is an
//!   [`Outbox`] around the store's own (`PgCheckpoints` for PostgreSQL): the runner's
//!   projection lock keeps one relay per store across processes, and another process
//!   takes over when the holder dies ([`wait_for_lock`](esrs_core::ProjectionRunner::wait_for_lock)).
//! - Publishes are pipelined across subjects: an event goes out at once unless its
//!   subject already has an unacknowledged one, and the [`Outbox`] awaits every
//!   acknowledgement (sending the held-back events in rounds, see [`OutboxTx`]) before it
//!   saves the checkpoint. A failed or missing acknowledgement fails the batch; the
//!   checkpoint stays where it was.
//! - Every message carries `Nats-Msg-Id: <stream id>/<version>`, the event's identity. An
//!   event sent again (after a crash between the publish and the checkpoint, a failed
//!   batch, or a takeover) is dropped by JetStream's duplicate window. [`RelayBuilder::build`]
//!   refuses, with [`RelayError::DuplicateWindowTooShort`], a stream whose
//!   `duplicate_window` is shorter than the relay's (two minutes by default,
//!   [`RelayBuilder::duplicate_window`]): a re-send must come within the window, so a relay
//!   down for longer than it may store its last unacknowledged batch twice.
//! - Per-stream order holds on the subject under every fault: the log is read in order,
//!   the events of a stream id all go to one subject, a retried batch is sent again in
//!   order, and at most one event per subject is in flight. (Were two in flight, a
//!   connection drop could lose the first while the second, queued behind it, went out
//!   after the reconnection; the retry would then store the first after the second.) The
//!   price is one round trip per event of a stream within a batch: a batch of many streams
//!   costs one or a few round trips, a batch of one stream's events one per event.
//! - Do not rebuild the relay: a rebuild sends the whole log again, and only what is
//!   within the duplicate window is dropped.
//!
//! # When NATS is down
//!
//! A publish or acknowledgement fails, the batch fails, and the runner's
//! [`ErrorPolicy`](esrs_core::projection::ErrorPolicy) applies; async-nats reconnects on
//! its own. The events stay in the store, so nothing is lost. Recommended:
//! `ErrorPolicy::Retry { max: u32::MAX, backoff: Duration::from_millis(200) }` (the backoff
//! doubles up to one minute), with the sum of a few backoffs well inside the duplicate
//! window; `async_nats::ConnectOptions::retry_on_initial_connect` lets a relay start
//! before NATS does.
//!
//! # Subjects
//!
//! `<prefix>.<aggregate>.<stream id>` by default ([`subject::default_subject`]): the
//! aggregate is the stream's category, the text before its first `-` (`cart-42` → `cart`),
//! or `_` for a stream without one; the last token is the whole stream id. Both are
//! escaped reversibly ([`subject::escape_token`]): `.`, `*`, `>`, whitespace, control
//! characters and the escape character `%` itself become `%XX`. A subscriber to one
//! aggregate reads `esrs.cart.>`. [`RelayBuilder::subject_fn`] replaces the rule.
//!
//! # Headers
//!
//! | header | value |
//! |---|---|
//! | `Nats-Msg-Id` | `<stream id>/<version>` |
//! | [`Esrs-Event-Id`](headers::EVENT_ID) | the event's id (a UUID) |
//! | [`Esrs-Stream`](headers::STREAM) | the stream id |
//! | [`Esrs-Stream-Version`](headers::STREAM_VERSION) | the event's version in its stream |
//! | [`Esrs-Name`](headers::NAME) | the stored name |
//! | [`Esrs-Schema-Version`](headers::SCHEMA_VERSION) | the payload's schema version |
//! | [`Esrs-Position`](headers::POSITION) | the global position, `transaction_id:sequence` |
//! | [`Esrs-Metadata`](headers::METADATA) | the metadata as JSON (absent when empty) |
//! | [`Esrs-Recorded-At`](headers::RECORDED_AT) | the recorded time, RFC 3339 |
//!
//! The body is the JSON payload as stored. [`headers::decode`] reads a message back as a
//! [`RecordedEvent`](esrs_core::RecordedEvent).
//!
//! # Consuming in another process
//!
//! [`JetStreamProjection`] runs any [`Projection`](esrs_core::Projection) over the
//! stream's messages with a [`CheckpointStore`](esrs_core::projection::CheckpointStore) of
//! its own (for example `PgCheckpoints` of a store in the reporting database): per batch
//! it begins a transaction, handles each message, saves the JetStream stream sequence as
//! the checkpoint, commits and then acknowledges. After a crash it resumes after its
//! checkpoint: a transactional read model gets every event exactly once, in order.

mod consumer;
mod error;
pub mod headers;
mod relay;
pub mod subject;

pub use consumer::{
    ConsumerProgress, DEFAULT_CONSUMER_BATCH, DEFAULT_IDLE_WAIT, JetStreamProjection,
};
pub use error::{ConsumerError, RelayError};
pub use relay::{
    DEFAULT_DUPLICATE_WINDOW, DEFAULT_PREFIX, DEFAULT_RELAY_NAME, Outbox, OutboxTx, Relay,
    RelayBuilder, Undecoded,
};

/// The `async-nats` this crate is built on, so that a program names the same version.
pub use async_nats;
