//! The repository: load, decide, append, with optimistic concurrency, retries, idempotency
//! keys and snapshots.
//!
//! | file | what |
//! |---|---|
//! | `setup.rs` | the [`Repository`] type: its store, retries, cache and [`Appender`] |
//! | `load.rs` | loading: the latest snapshot and the tail, time travel, history |
//! | `execute.rs` | the command loop: decide, append, retry, idempotent replays |
//! | `snapshot_policy.rs` | when a command's result is saved as a snapshot ([`SnapshotPolicy`]), snapshots on demand |
//! | `cache.rs` | the in-process aggregate cache |

mod cache;
pub(crate) mod execute;
mod load;
pub(crate) mod setup;
mod snapshot_policy;

pub use cache::CacheStats;
pub use execute::{AsyncCommand, BoxFuture, Command, Execute, Executed, State, SyncCommand};
pub use load::{HistoryEntry, Loaded};
pub use setup::Appender;
pub(crate) use setup::Repository;
pub use snapshot_policy::{SnapshotContext, SnapshotPolicy};

use crate::error::{Error, Result};
use crate::stream::{StreamId, Version};

/// Decodes a stored event of `stream` at `version`, first fetching from `keys` the keys of
/// the subjects whose personal data its payload holds (none, for most payloads).
async fn decode_stored<E: crate::event::EventSet>(
    keys: Option<&dyn crate::personal::KeyStore>,
    stream: &StreamId,
    version: Version,
    name: &str,
    schema_version: u32,
    payload: &str,
) -> Result<E> {
    let subjects = match keys {
        Some(_) => crate::personal::subjects_in(payload),
        None => Vec::new(),
    };
    let decoded = match keys {
        Some(keys) if !subjects.is_empty() => {
            let ring = crate::personal::KeyRing::for_reading(keys, &subjects).await?;
            ring.decode_payload(stream, name, schema_version, payload)
        }
        _ => E::decode(name, schema_version, payload),
    };
    decoded_at(stream, version, decoded)
}

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
