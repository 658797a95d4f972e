#![doc = include_str!("../README.md")]

pub mod backup;
pub mod capture;
mod error;
mod inspect;
mod legacy;
mod migrations;
mod personal;
mod projection;
mod roles;
mod store;

pub use error::{Error, Result};
pub use inspect::{OpenTransaction, ProjectionInfo, ResetError, StoreStats, StreamInfo};
pub use legacy::{CaptureMapping, TableImport, TableImportError, TableMapping};
pub use personal::{DEFAULT_KEY_CACHE_TTL, PgKeyStore};
pub use projection::{InlineReadModel, PgCheckpointError, PgCheckpoints, PgTransaction};
pub use store::{
    DEFAULT_SCHEMA, DEFAULT_SLOW_APPEND_THRESHOLD, MAX_PARTITIONS, MAX_SCHEMA_LEN, PgHealth,
    PgStore, PgStoreOptions, ProjectionLock,
};

/// Re-exported so users name the pool and connection types of the same sqlx version.
pub use sqlx;
