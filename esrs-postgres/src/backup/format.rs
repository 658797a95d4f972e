//! The lines of a backup file, and the digests that check them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The `format` of every backup's first line.
pub const FORMAT: &str = "esrs-backup";
/// The version of the format this code writes; it reads this version only. Version 2 added
/// the events' ids.
pub const FORMAT_VERSION: u32 = 2;

/// One line of a backup: a JSON object whose `type` says what it holds.
///
/// A backup is, in this order: one [`Header`](Line::Header); the
/// [`Checkpoint`](Line::Checkpoint)s; every [`Event`](Line::Event) in the order of the
/// global log; the [`Snapshot`](Line::Snapshot)s; the
/// [`IdempotencyKey`](Line::IdempotencyKey)s; one [`Stream`](Line::Stream) per stream
/// (sorted by stream id) with the digest of its chain; one [`Manifest`](Line::Manifest).
/// Payloads and metadata are JSON strings holding the stored text, so that they come back
/// byte for byte and a payload's own line breaks never break a line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Line {
    Header {
        format: String,
        format_version: u32,
        schema: String,
        store_schema_version: i32,
        exported_at: DateTime<Utc>,
    },
    Checkpoint {
        projection: String,
        transaction_id: i64,
        sequence: i64,
        /// How many events of the backup lie at or before the checkpoint: what an import
        /// translates it with.
        covers: u64,
        updated_at: DateTime<Utc>,
    },
    Event {
        transaction_id: i64,
        sequence: i64,
        id: uuid::Uuid,
        stream: String,
        version: i64,
        name: String,
        event_version: i32,
        payload: String,
        metadata: Option<String>,
        recorded_at: DateTime<Utc>,
    },
    Snapshot {
        stream: String,
        version: i64,
        snapshot_version: i64,
        fingerprint: i64,
        payload: String,
        saved_at: DateTime<Utc>,
    },
    IdempotencyKey {
        key: String,
        stream: String,
        first_version: i64,
        last_version: i64,
        /// Whether the append wrote events (an append of none records no position).
        wrote_events: bool,
        request_digest: Option<String>,
        created_at: DateTime<Utc>,
    },
    Stream {
        stream: String,
        version: i64,
        digest: String,
    },
    Manifest {
        events: u64,
        streams: u64,
        snapshots: u64,
        idempotency_keys: u64,
        checkpoints: u64,
        digest: String,
    },
}

/// The chain digest of a stream: SHA-256 over the previous digest and each event's id and
/// content (everything but its position, which an import gives anew).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Chain {
    pub(crate) version: i64,
    pub(crate) digest: [u8; 32],
}

fn field(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_be_bytes());
    hasher.update(bytes);
}

impl Chain {
    /// The chain after one more event.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn next(
        &self,
        id: uuid::Uuid,
        version: i64,
        name: &str,
        event_version: i32,
        payload: &str,
        metadata: Option<&str>,
        recorded_at: DateTime<Utc>,
    ) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(self.digest);
        hasher.update(id.as_bytes());
        hasher.update(version.to_be_bytes());
        field(&mut hasher, name.as_bytes());
        hasher.update(event_version.to_be_bytes());
        field(&mut hasher, payload.as_bytes());
        match metadata {
            Some(metadata) => {
                hasher.update([1]);
                field(&mut hasher, metadata.as_bytes());
            }
            None => hasher.update([0]),
        }
        hasher.update(recorded_at.timestamp_micros().to_be_bytes());
        Self {
            version,
            digest: hasher.finalize().into(),
        }
    }
}

/// Lowercase hexadecimal.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// The digest of the whole backup: SHA-256 over every stream's id, version and chain
/// digest, in stream order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Total {
    hasher: Sha256,
}

impl Total {
    pub(crate) fn stream(&mut self, stream: &str, chain: &Chain) {
        field(&mut self.hasher, stream.as_bytes());
        self.hasher.update(chain.version.to_be_bytes());
        self.hasher.update(chain.digest);
    }

    pub(crate) fn finish(self) -> String {
        hex(&self.hasher.finalize())
    }
}
