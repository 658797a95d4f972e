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
//!
//! # What is where
//!
//! The crate root holds what an application uses; each item has this one path.
//!
//! | concept | at the root | details in |
//! |---|---|---|
//! | events | [`Event`] (the trait and its derive), [`EventSet`] (the event enum `#[aggregate]` generates) | [`catalog`]: the program's events, their check, and the lock file of their schemas (`verify_lock`) |
//! | aggregates | [`aggregate`] (the macro), [`Aggregate`] (what it implements), [`IntoEvents`] (what commands return) | |
//! | running commands | [`Repository`]: `load`, `load_at`, `load_as_of`, `history`, `execute(…).idempotency_key(…).retries(…)` | [`repository`]: the command builder, its result, loaded states, history entries |
//! | identity | [`StreamId`], [`Version`], [`ExpectedVersion`], [`IdempotencyKey`], [`Metadata`], [`Position`] | |
//! | storage | [`EventStore`], [`InMemoryStore`], [`RecordedEvent`]; PostgreSQL in the `esrs-postgres` crate | [`store`]: what a store implementor needs |
//! | read models | [`Projection`], [`ProjectionRunner`] | [`projection`]: checkpoints, error policies, status, the running handle |
//! | personal data | | [`personal`]: `Personal` (the type of a field marked `#[event(personal)]`, also in the prelude), key stores, `forget`, the cipher |
//! | errors | [`Error`], [`Result`], [`Conflict`], [`DecodeError`], [`ExecuteError`], [`BoxError`] | [`error`]: why a stream id, key, metadata or payload was refused; [`ErrorChain`](error::ErrorChain), which shows an error with its causes |
//! | operation | | [`metrics`]: the metrics esrs records (names, labels, units) and [`metrics::describe`]; `tracing` spans `esrs.*` around every operation |
//! | time and ids | [`chrono`], [`uuid`] (the versions esrs uses) | |
//! | tests | | [`testing`]: `given` / `when` / `then` for aggregates, policies and projections |
//! | compile errors | | [`requirements`]: what the macros require of a program's types, as the traits their errors name |
//!
//! `use esrs_core::prelude::*;` brings the names most programs need.
//!
//! # Guarantees
//!
//! Every store keeps them, and proves it by passing the same conformance suite:
//! versions 1, 2, 3 … per stream with no gap and no duplicate under any number of writers (a
//! stale writer gets [`Error::Conflict`], or a bounded retry when asked); appends are all or
//! nothing; an idempotency key appends at most once and a repeat gets the original outcome; a
//! reader of the global log never skips an event; payloads over the limit (1 MiB by default)
//! are refused with advice to store the blob elsewhere. Snapshots are only an optimisation: a
//! snapshot written by another fold or that no longer decodes is ignored, never trusted.
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `conformance` | no | the store conformance suite (module `conformance`, macro `store_conformance_tests!`), for implementors of [`EventStore`] |

// Lets the macros' generated code (`::esrs_core::…`) compile inside this crate's own tests.
extern crate self as esrs_core;

mod aggregate;
pub mod catalog;
mod envelope;
pub mod error;
mod event;
mod event_name;
mod idempotency;
mod memory;
pub mod metrics;
pub mod personal;
mod position;
mod private;
pub mod projection;
pub mod repository;
pub mod requirements;
mod snapshot;
pub mod store;
mod stream;
pub mod testing;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use aggregate::Aggregate;
pub use envelope::{Metadata, RecordedEvent};
pub use error::runtime::{BoxError, Conflict, Error, Result};
pub use esrs_derive::{Event, aggregate};
pub use event::{DecodeError, Event, EventSet, IntoEvents};
pub use idempotency::IdempotencyKey;
pub use memory::InMemoryStore;
pub use position::Position;
pub use projection::read_model::Projection;
pub use projection::runner::ProjectionRunner;
pub use repository::execute::ExecuteError;
pub use repository::setup::Repository;
pub use store::event_store::EventStore;
pub use stream::{ExpectedVersion, StreamId, Version};

/// The `chrono` of the recorded times and of [`Repository::load_as_of`], so a program needs no
/// `chrono` dependency of its own to name them.
pub use chrono;
/// The `uuid` of the correlation and causation ids in [`Metadata`], so a program needs no
/// `uuid` dependency of its own to name them.
pub use uuid;

/// The names most programs need: `use esrs_core::prelude::*;`.
pub mod prelude {
    pub use crate::personal::Personal;
    pub use crate::testing::AggregateTestExt;
    pub use crate::{
        Aggregate, Event, EventSet, EventStore, ExecuteError, ExpectedVersion, IdempotencyKey,
        InMemoryStore, Metadata, Projection, ProjectionRunner, Repository, StreamId,
    };
    pub use esrs_derive::{aggregate, apply, helper};
    /// Reads an [`EventStream`](crate::store::EventStream) (`try_next`, `try_collect`, …).
    pub use futures_util::TryStreamExt;
}

/// Items used by the code that esrs's macros generate. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use serde;
    pub use serde_json;
    pub use serde_json::value::RawValue;

    pub use crate::private::*;
}
