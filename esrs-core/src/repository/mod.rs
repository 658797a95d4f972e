//! The repository: load, decide, append, with optimistic concurrency, retries, idempotency
//! keys and snapshots.
//!
//! | file | what |
//! |---|---|
//! | `setup.rs` | the [`Repository`] type: its store, retries and cache |
//! | `load.rs` | loading: the latest snapshot and the tail, time travel, history |
//! | `execute.rs` | the command loop: decide, append, retry, idempotent replays |
//! | `snapshot_policy.rs` | when a command's result is saved as a snapshot |
//! | `cache.rs` | the in-process aggregate cache |

mod cache;
pub(crate) mod execute;
mod load;
pub(crate) mod setup;
mod snapshot_policy;

pub use cache::CacheStats;
pub use execute::{Execute, Executed};
pub use load::{HistoryEntry, Loaded};
pub(crate) use setup::Repository;

use crate::error::{Error, Result};
use crate::stream::{StreamId, Version};

/// A decoded event of `stream` at `version`, or the decode error naming both.
fn decoded_at<E>(
    stream: &StreamId,
    version: Version,
    decoded: std::result::Result<E, crate::DecodeError>,
) -> Result<E> {
    decoded.map_err(|source| Error::Decode {
        stream: stream.clone(),
        version,
        source,
    })
}
