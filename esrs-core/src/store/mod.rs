//! What a store implementor needs: the requests and outcomes of [`EventStore`], the items its
//! reads give, snapshots, idempotency records and the rules every store follows.
//!
//! An application needs none of this: it uses [`Repository`](crate::Repository) on a store
//! ([`InMemoryStore`](crate::InMemoryStore), or `esrs_postgres::PgStore`). A new store
//! implements [`EventStore`] with these types and proves its guarantees by passing the
//! conformance suite (`esrs_core::conformance`, feature `conformance`).
//!
//! | what | items |
//! |---|---|
//! | appending | [`AppendRequest`], [`NewEvent`], [`AppendOutcome`], [`DEFAULT_MAX_PAYLOAD_BYTES`] |
//! | reading | [`EventStream`] (of [`RecordedEvent`](crate::RecordedEvent), named by [`EventName`]), [`FoldStream`] (of [`FoldItem`]: [`FoldEvent`] or [`Snapshot`]), [`Sequence`] |
//! | filtered reads | [`LogFilter`], [`Shard`], [`LogStream`] (of [`LogEntry`]), [`ShardError`] |
//! | payloads | [`Payload`], [`encode_json`] |
//! | snapshots | [`Snapshot`], [`SnapshotKey`], the rule [`keep_snapshot`], [`SNAPSHOT_KEYS_PER_STREAM`] |
//! | idempotency | [`IdempotencyRecord`] and its [`replay`](IdempotencyRecord::replay) rule, [`RequestDigest`], [`DEFAULT_IDEMPOTENCY_RETENTION`] |

pub(crate) mod event_store;
mod log;

pub(crate) use event_store::EventStore;
pub use event_store::{DEFAULT_MAX_PAYLOAD_BYTES, EventStream, FoldItem, FoldStream};
pub use log::{LogEntry, LogFilter, LogStream, Shard, ShardError};

pub use crate::envelope::{AppendOutcome, AppendRequest, FoldEvent, NewEvent};
pub use crate::event::{Payload, encode_json};
pub use crate::event_name::EventName;
pub use crate::idempotency::{DEFAULT_IDEMPOTENCY_RETENTION, IdempotencyRecord, RequestDigest};
pub use crate::position::Sequence;
pub use crate::snapshot::{SNAPSHOT_KEYS_PER_STREAM, Snapshot, SnapshotKey, keep_snapshot};
