//! Snapshots: the latest of a key is kept and returned, other keys are kept apart and pruned
//! oldest first.

use futures_util::TryStreamExt;

use super::{event, payload, unique_stream};
use crate::store::{AppendRequest, FoldItem, Snapshot, SnapshotKey};
use crate::{EventStore, ExpectedVersion, Version};

checks! {
    /// Snapshots: the latest one with the asked key is returned; another key is ignored; an
    /// older one never replaces a newer; `read_for_fold` with the key gives the snapshot then
    /// the tail.
    pub async fn snapshots<S: EventStore>(store: S) {
        let stream = unique_stream("snap");
        let key = SnapshotKey::new(1, 0xfeed);
        let other_key = SnapshotKey::new(2, 0xfeed);
        let events: Vec<_> = (1..=6).map(|n| event("E", n)).collect();
        store
            .append(AppendRequest::new(
                stream.clone(),
                ExpectedVersion::Any,
                events,
            ))
            .await
            .expect("append succeeds");
        assert!(
            store
                .load_snapshot(&stream, key)
                .await
                .expect("load")
                .is_none()
        );

        let items: Vec<FoldItem> = store
            .read_for_fold(&stream, 1, Version::MAX, Some(key))
            .try_collect()
            .await
            .expect("read succeeds");
        assert_eq!(items.len(), 6);
        assert!(items.iter().all(|i| matches!(i, FoldItem::Event(_))));

        store
            .save_snapshot(Snapshot::new(
                stream.clone(),
                4,
                key,
                payload(serde_json::json!({ "sum": 10 })),
            ))
            .await
            .expect("save succeeds");
        store
            .save_snapshot(Snapshot::new(
                stream.clone(),
                2,
                key,
                payload(serde_json::json!({ "sum": 3 })),
            ))
            .await
            .expect("save of an older snapshot succeeds");
        let loaded = store
            .load_snapshot(&stream, key)
            .await
            .expect("load")
            .expect("a snapshot");
        assert_eq!((loaded.version, loaded.payload.get()), (4, r#"{"sum":10}"#));
        assert!(
            store
                .load_snapshot(&stream, other_key)
                .await
                .expect("load")
                .is_none()
        );

        let items: Vec<FoldItem> = store
            .read_for_fold(&stream, 1, Version::MAX, Some(key))
            .try_collect()
            .await
            .expect("read succeeds");
        match &items[..] {
            [
                FoldItem::Snapshot(s),
                FoldItem::Event(e5),
                FoldItem::Event(e6),
            ] => {
                assert_eq!((s.version, e5.version, e6.version), (4, 5, 6));
            }
            other => panic!("expected a snapshot and two events, got {other:?}"),
        }
        let items: Vec<FoldItem> = store
            .read_for_fold(&stream, 1, Version::MAX, Some(other_key))
            .try_collect()
            .await
            .expect("read succeeds");
        assert_eq!(items.len(), 6, "a snapshot of another key is not used");
    }

    /// Snapshots are kept per key, by the rule of [`crate::store::keep_snapshot`]: a snapshot of
    /// one key never replaces another key's (two deployed versions of a program keep theirs), a
    /// newer snapshot replaces the one of its key and an older changes nothing, and a stream
    /// keeps the [`crate::store::SNAPSHOT_KEYS_PER_STREAM`] keys saved most recently.
    pub async fn snapshots_kept_per_key<S: EventStore>(store: S) {
        let stream = unique_stream("snap-keys");
        let old = SnapshotKey::new(1, 0xa);
        let new = SnapshotKey::new(1, 0xb);
        store
            .append(AppendRequest::new(
                stream.clone(),
                ExpectedVersion::Any,
                (1..=12).map(|n| event("E", n)).collect(),
            ))
            .await
            .expect("append succeeds");
        let save = |version: Version, key: SnapshotKey| {
            store.save_snapshot(Snapshot::new(
                stream.clone(),
                version,
                key,
                payload(serde_json::json!({ "at": version })),
            ))
        };
        let loaded = |key: SnapshotKey| {
            let stream = stream.clone();
            let store = &store;
            async move {
                store
                    .load_snapshot(&stream, key)
                    .await
                    .expect("load succeeds")
                    .map(|s| (s.version, s.payload.get().to_owned()))
            }
        };

        // Two versions of a program, saving in turn: each keeps its own.
        save(4, old).await.expect("save succeeds");
        save(5, new).await.expect("save succeeds");
        save(6, old).await.expect("save succeeds");
        save(3, new)
            .await
            .expect("save of an older snapshot succeeds");
        assert_eq!(loaded(old).await, Some((6, r#"{"at":6}"#.to_owned())));
        assert_eq!(
            loaded(new).await,
            Some((5, r#"{"at":5}"#.to_owned())),
            "a snapshot of another key does not replace this key's, an older one of the same key neither"
        );
        let items: Vec<FoldItem> = store
            .read_for_fold(&stream, 1, Version::MAX, Some(new))
            .try_collect()
            .await
            .expect("read succeeds");
        assert!(
            matches!(
                &items[..],
                [FoldItem::Snapshot(s), rest @ ..] if s.version == 5 && rest.len() == 7
            ),
            "the snapshot of its own key, then the events after it: {items:?}"
        );
        let items: Vec<FoldItem> = store
            .read_for_fold(&stream, 1, Version::MAX, Some(old))
            .try_collect()
            .await
            .expect("read succeeds");
        assert!(
            matches!(
                &items[..],
                [FoldItem::Snapshot(s), rest @ ..] if s.version == 6 && rest.len() == 6
            ),
            "the snapshot of its own key, then the events after it: {items:?}"
        );

        // Newer keys push the oldest out: `new` was saved before `old`, so it goes first.
        let later: Vec<SnapshotKey> = (0..crate::store::SNAPSHOT_KEYS_PER_STREAM as u64 - 1)
            .map(|i| SnapshotKey::new(2, i))
            .collect();
        for (i, key) in later.iter().enumerate() {
            save(7 + i as Version, *key).await.expect("save succeeds");
        }
        assert_eq!(
            loaded(new).await,
            None,
            "the key saved longest ago is pruned"
        );
        assert_eq!(loaded(old).await, Some((6, r#"{"at":6}"#.to_owned())));
        for (i, key) in later.iter().enumerate() {
            assert_eq!(loaded(*key).await.map(|s| s.0), Some(7 + i as Version));
        }
        save(11, SnapshotKey::new(3, 0))
            .await
            .expect("save succeeds");
        assert_eq!(loaded(old).await, None, "then the next oldest");
    }
}
