//! A PostgreSQL event store for esrs.
//!
//! [`PgStore`] implements [`esrs_core::EventStore`] on PostgreSQL 13 or newer with sqlx: the
//! same guarantees as the in-memory store (versions without gaps under any number of
//! writers, atomic batches, idempotency keys, append-only history, a global log that never
//! skips a late commit), one round trip per append, snapshots loaded with their tail in one
//! query, and notifications that wake readers at the head of the log.
//!
//! ```no_run
//! use esrs_core::{AppendRequest, EventStore, ExpectedVersion, NewEvent, Position, StreamId};
//! use esrs_postgres::PgStore;
//! use futures_util::TryStreamExt;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let store = PgStore::connect("postgres://postgres@localhost/app").await?;
//! store.migrate().await?; // creates or upgrades the `esrs` schema; safe to repeat
//!
//! let cart = StreamId::new("cart-42")?;
//! let payload = serde_json::value::to_raw_value(&serde_json::json!({ "item": "book" }))?;
//! let outcome = store
//!     .append(AppendRequest::new(
//!         cart.clone(),
//!         ExpectedVersion::NoStream,
//!         vec![NewEvent::new("ItemAdded", 1, payload)],
//!     ))
//!     .await?;
//! assert_eq!(outcome.last_version, 1);
//!
//! let history: Vec<_> = store.read_stream(&cart, 1, u64::MAX).try_collect().await?;
//! assert_eq!(history[0].name, "ItemAdded");
//!
//! // A projection follows the global log from its checkpoint.
//! let after = store.load_checkpoint("cart-totals").await?.unwrap_or(Position::START);
//! let mut log = store.read_all(after);
//! while let Some(event) = log.try_next().await? {
//!     // … update the read model, then:
//!     store.save_checkpoint("cart-totals", event.position).await?;
//! }
//! # Ok(()) }
//! ```
//!
//! # Schema
//!
//! [`PgStore::migrate`] creates the store's tables in their own schema (`esrs` unless
//! [`PgStoreOptions::schema`] says otherwise) and records the applied versions in
//! `<schema>.migrations`, apart from the application's migrations:
//!
//! | table | holds |
//! |---|---|
//! | `events` | every event: sequence, writing transaction (`xid8`), stream, version, name, event version, payload (`json`, byte-exact), metadata (`jsonb`), recorded time |
//! | `snapshots` | the latest snapshot of each stream |
//! | `idempotency_keys` | the outcome of each append made with a key |
//! | `checkpoints` | the position of each projection in the global log |
//!
//! # Errors
//!
//! Database errors map to [`esrs_core::Error`]: a lost race for a stream version is
//! `Conflict`; serialization failures and deadlocks are `Retryable`; a refused or lost
//! connection, a pool timeout or a terminated backend is `Unavailable` (an append that got
//! it may or may not have committed: retry it with its idempotency key). Setting the store up
//! reports this crate's [`Error`].

mod error;
mod migrations;
mod projection;
mod store;

pub use error::{Error, Result};
pub use projection::{PgCheckpoints, PgProjectionLock, PgTransaction};
pub use store::{DEFAULT_SCHEMA, MAX_SCHEMA_LEN, PgStore, PgStoreOptions};

/// Re-exported so users name the pool and connection types of the same sqlx version.
pub use sqlx;
