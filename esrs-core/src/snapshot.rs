//! Snapshots: the stored state of a stream at a version, the key of the code that wrote it,
//! and which snapshots a store keeps (the rule of [`EventStore::save_snapshot`], written once).
//!
//! [`EventStore::save_snapshot`]: crate::EventStore::save_snapshot

use crate::event::Payload;
use crate::stream::{StreamId, Version};

/// Identifies the code a snapshot was written by: the snapshot version the aggregate declares
/// (raise it when the state's layout changes) and a fingerprint of its `#[apply]` handlers'
/// code. Only the handlers are fingerprinted, not the state type: a change of layout alone
/// is caught by the declared version, or by the snapshot failing to decode. A snapshot is
/// only used by code with the same key; any other is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct SnapshotKey {
    /// The aggregate's declared snapshot schema version (`#[aggregate(snapshot_version = …)]`).
    pub schema_version: u32,
    /// A fingerprint of the aggregate's fold (its apply code).
    pub fingerprint: u64,
}

impl SnapshotKey {
    /// A snapshot key.
    pub const fn new(schema_version: u32, fingerprint: u64) -> Self {
        Self {
            schema_version,
            fingerprint,
        }
    }
}

/// The state of one stream at one version, stored to shorten later loads.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Snapshot {
    /// The stream.
    pub stream: StreamId,
    /// The stream version the state was folded up to.
    pub version: Version,
    /// The layout and fold logic that wrote it.
    pub key: SnapshotKey,
    /// The encoded state.
    pub payload: Payload,
}

impl Snapshot {
    /// A snapshot of `stream` at `version`.
    pub fn new(stream: StreamId, version: Version, key: SnapshotKey, payload: Payload) -> Self {
        Self {
            stream,
            version,
            key,
            payload,
        }
    }
}

/// How many snapshot keys a store keeps per stream: the key of the latest save and the
/// `SNAPSHOT_KEYS_PER_STREAM - 1` other keys saved most recently.
///
/// Two deployed versions of a program whose folds differ (a rolling deploy, a canary) write
/// snapshots under different [`SnapshotKey`](crate::store::SnapshotKey)s; each keeps its own instead
/// of overwriting the other's at every save. Older keys, whose code is gone, are pruned as
/// newer ones are saved, so they do not pile up.
pub const SNAPSHOT_KEYS_PER_STREAM: usize = 3;

/// Applies the rule of [`EventStore::save_snapshot`](crate::EventStore::save_snapshot) to the
/// snapshots a store keeps for one stream, for store implementations: `kept` holds at most
/// one snapshot per key, the most recently saved first, and `snapshot` is of the same stream.
///
/// - `snapshot` replaces the snapshot of its key only if it is newer (of a higher stream
///   version), and is then the most recently saved; an older or equal one changes nothing.
/// - Then the stream keeps the snapshot of `snapshot`'s key and the snapshots of the
///   [`SNAPSHOT_KEYS_PER_STREAM`]` - 1` other keys saved most recently; the rest are dropped.
pub fn keep_snapshot(kept: &mut Vec<Snapshot>, snapshot: Snapshot) {
    let key = snapshot.key;
    match kept.iter().position(|s| s.key == key) {
        Some(at) if kept[at].version >= snapshot.version => {}
        Some(at) => {
            kept.remove(at);
            kept.insert(0, snapshot);
        }
        None => kept.insert(0, snapshot),
    }
    let mut others = 0;
    kept.retain(|s| {
        if s.key == key {
            return true;
        }
        others += 1;
        others < SNAPSHOT_KEYS_PER_STREAM
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StreamId;
    use crate::store::SnapshotKey;

    fn snap(version: u64, fingerprint: u64) -> Snapshot {
        let payload = serde_json::value::to_raw_value(&version).unwrap();
        Snapshot::new(
            StreamId::new("s").unwrap(),
            version,
            SnapshotKey::new(1, fingerprint),
            payload,
        )
    }

    fn view(kept: &[Snapshot]) -> Vec<(u64, u64)> {
        kept.iter()
            .map(|s| (s.key.fingerprint, s.version))
            .collect()
    }

    #[test]
    fn one_snapshot_per_key_newest_kept_oldest_keys_pruned() {
        let mut kept = Vec::new();
        keep_snapshot(&mut kept, snap(4, 0xa));
        keep_snapshot(&mut kept, snap(5, 0xb));
        assert_eq!(view(&kept), [(0xb, 5), (0xa, 4)]);
        keep_snapshot(&mut kept, snap(3, 0xa));
        assert_eq!(
            view(&kept),
            [(0xb, 5), (0xa, 4)],
            "an older snapshot changes nothing"
        );
        keep_snapshot(&mut kept, snap(6, 0xa));
        assert_eq!(view(&kept), [(0xa, 6), (0xb, 5)]);
        keep_snapshot(&mut kept, snap(7, 0xc));
        keep_snapshot(&mut kept, snap(8, 0xd));
        assert_eq!(view(&kept), [(0xd, 8), (0xc, 7), (0xa, 6)]);
        // A refused save is not a save: it does not make its key the most recent.
        keep_snapshot(&mut kept, snap(1, 0xa));
        keep_snapshot(&mut kept, snap(9, 0xe));
        assert_eq!(view(&kept), [(0xe, 9), (0xd, 8), (0xc, 7)]);
    }
}
