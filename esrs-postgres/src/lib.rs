#![doc = include_str!("../README.md")]

pub mod backup;
mod error;
mod inspect;
mod migrations;
mod personal;
mod projection;
mod roles;
mod store;

pub use error::{Error, Result};
pub use inspect::{OpenTransaction, ProjectionInfo, ResetError, StoreStats, StreamInfo};
pub use personal::{DEFAULT_KEY_CACHE_TTL, PgKeyStore};
pub use projection::{PgCheckpointError, PgCheckpoints, PgTransaction};
pub use store::{DEFAULT_SCHEMA, MAX_SCHEMA_LEN, PgStore, PgStoreOptions, ProjectionLock};

/// Re-exported so users name the pool and connection types of the same sqlx version.
pub use sqlx;
