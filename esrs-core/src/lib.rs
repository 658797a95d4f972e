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
//! use esrs_core::{DecodeError, EncodeError, Payload};
//! use serde::{Deserialize, Serialize};
//! use serde_json::value::RawValue;
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! struct Deposited { amount: u64 }
//!
//! #[derive(Debug, Clone, PartialEq)]
//! enum AccountEvent { Deposited(Deposited) }
//!
//! impl EventSet for AccountEvent {
//!     const NAMES: &'static [&'static str] = &["Deposited"];
//!     fn name(&self) -> &'static str { "Deposited" }
//!     fn version(&self) -> u32 { 1 }
//!     fn encode(&self) -> Result<Payload, EncodeError> {
//!         let AccountEvent::Deposited(e) = self;
//!         esrs_core::encode_json("Deposited", e)
//!     }
//!     fn decode(name: &str, version: u32, payload: &RawValue) -> Result<Self, DecodeError> {
//!         match (name, version) {
//!             ("Deposited", 1) => Ok(AccountEvent::Deposited(DecodeError::parse("Deposited", 1, payload)?)),
//!             ("Deposited", v) => Err(DecodeError::UnknownVersion { name: "Deposited", version: v, known: vec![1] }),
//!             _ => Err(DecodeError::UnknownName { name: name.to_owned(), known: Self::NAMES.to_vec() }),
//!         }
//!     }
//! }
//!
//! #[derive(Debug, Default)]
//! struct Account { balance: u64 }
//!
//! impl Aggregate for Account {
//!     const NAME: &'static str = "account";
//!     type Event = AccountEvent;
//!     fn apply(&mut self, event: &AccountEvent) {
//!         match event { AccountEvent::Deposited(e) => self.balance += e.amount }
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let accounts = Repository::<Account, _>::new(InMemoryStore::new());
//! let id = StreamId::new("alice")?;
//! accounts
//!     .execute(&id, |_account| Ok::<_, std::convert::Infallible>(AccountEvent::Deposited(Deposited { amount: 300 })))
//!     .await?;
//! let account = accounts.load(&id).await?;
//! assert_eq!((account.balance, account.version), (300, 1));
//! # Ok(()) }
//! ```

mod aggregate;
mod catalog;
mod envelope;
mod error;
mod event;
mod memory;
mod private;
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
        InMemoryStore, Metadata, Repository, StreamId,
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
