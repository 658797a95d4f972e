//! Event-sourced aggregates for Rust.
//!
//! esrs stores every change of a domain as an immutable event and rebuilds state as a left
//! fold of those events. This crate is the runtime: the [`Event`] and [`Aggregate`] traits,
//! the [`EventStore`] abstraction with its [`InMemoryStore`], and the [`Repository`] that
//! loads an aggregate, runs a command and appends the resulting events with optimistic
//! concurrency, retries, idempotency keys and snapshots.
//!
//! ```
//! use esrs_core::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Event, Debug, Clone, PartialEq, Serialize, Deserialize)]
//! struct Deposited { amount: u64 }
//!
//! #[derive(Debug, Default)]
//! struct Account { balance: u64 }
//!
//! #[aggregate(name = "account")]
//! impl Account {
//!     #[apply]
//!     fn deposited(&mut self, e: &Deposited) { self.balance += e.amount }
//!
//!     fn deposit(&self, amount: u64) -> Result<Deposited, std::convert::Infallible> {
//!         Ok(Deposited { amount })
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let accounts = Repository::<Account, _>::new(InMemoryStore::new());
//! let id = StreamId::new("alice")?;
//! accounts
//!     .execute(&id, |account| account.deposit(300))
//!     .await?;
//! let account = accounts.load(&id).await?;
//! assert_eq!((account.balance, account.version), (300, 1));
//! # Ok(()) }
//! ```

// Lets the macros' generated code (`::esrs_core::…`) compile inside this crate's own tests.
extern crate self as esrs_core;

mod aggregate;
mod catalog;
mod envelope;
mod error;
mod event;
mod memory;
mod private;
pub mod projection;
mod repository;
mod store;
mod stream;
pub mod testing;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use aggregate::{Aggregate, decode_snapshot, encode_snapshot};
pub use catalog::{
    AggregateInfo, Catalog, CatalogConflict, CatalogError, EventInfo, catalog, check_catalog,
};
pub use envelope::{
    AppendOutcome, AppendRequest, Metadata, NewEvent, RecordedEvent, Snapshot, SnapshotKey,
};
pub use error::{BoxError, Conflict, Error, Result};
pub use esrs_derive::{Event, aggregate};
pub use event::{DecodeError, EncodeError, Event, EventSet, IntoEvents, Payload, encode_json};
pub use memory::InMemoryStore;
pub use projection::{
    CheckpointStore, ErrorPolicy, InMemoryCheckpoints, Projection, ProjectionError,
    ProjectionEvents, ProjectionRunner, ProjectionStatus,
};
pub use repository::{Execute, ExecuteError, Executed, HistoryEntry, Loaded, Repository};
pub use store::{
    DEFAULT_MAX_PAYLOAD_BYTES, EventStore, EventStream, SnapshotAndEvents, StreamItem,
};
pub use stream::{
    ExpectedVersion, IdempotencyKey, IdempotencyKeyError, MAX_STREAM_ID_LEN, Position, Sequence,
    StreamId, StreamIdError, Version,
};

/// The names most programs need: `use esrs_core::prelude::*;`.
pub mod prelude {
    pub use crate::testing::AggregateTestExt;
    pub use crate::{
        Aggregate, Event, EventSet, EventStore, ExecuteError, ExpectedVersion, IdempotencyKey,
        InMemoryStore, Metadata, Projection, ProjectionRunner, Repository, StreamId,
    };
    pub use esrs_derive::aggregate;
}

/// Items used by the code that esrs's macros generate. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use serde;
    pub use serde_json;
    pub use serde_json::value::RawValue;

    pub use crate::private::*;
}
