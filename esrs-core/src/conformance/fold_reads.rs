//! Reads for a fold (`read_for_fold`): the same events as the full read, with or without a
//! snapshot.

use futures_util::TryStreamExt;

use super::{event, payload, unique_stream};
use crate::store::{
    AppendRequest, EventName, FoldEvent, FoldItem, NewEvent, Snapshot, SnapshotKey,
};
use crate::{EventStore, ExpectedVersion, RecordedEvent, StreamId, Version};

checks! {
    /// The read for a fold (`read_for_fold`) gives exactly the versions, names, schema versions
    /// and payloads of the full read, for every range, with and without a snapshot.
    pub async fn fold_reads_match_full_reads<S: EventStore>(store: S) {
        let stream = unique_stream("fold");
        let events: Vec<_> = (1..=8u64)
            .map(|n| {
                let name = if n % 3 == 0 { "Other" } else { "E" };
                let version = if n % 2 == 0 { 2 } else { 1 };
                NewEvent::new(
                    name,
                    version,
                    payload(serde_json::json!({ "n": n, "text": format!("é \"{n}\"") })),
                )
            })
            .collect();
        store
            .append(AppendRequest::new(
                stream.clone(),
                ExpectedVersion::NoStream,
                events,
            ))
            .await
            .expect("append succeeds");
        // Another stream's events never show up in this one's reads.
        store
            .append(AppendRequest::new(
                unique_stream("fold-other"),
                ExpectedVersion::Any,
                vec![event("E", 99)],
            ))
            .await
            .expect("append succeeds");

        let ranges: [(Version, Version, usize); 9] = [
            (1, Version::MAX, 8),
            (0, Version::MAX, 8),
            (3, 5, 3),
            (6, 6, 1),
            (5, 4, 0),
            (7, Version::MAX, 2),
            (2, 100, 7),
            (9, Version::MAX, 0),
            (1, 0, 0),
        ];
        for (from, to, expected) in ranges {
            let full: Vec<RecordedEvent> = store
                .read_stream(&stream, from, to)
                .try_collect()
                .await
                .expect("read_stream succeeds");
            let narrow = fold_events(
                store
                    .read_for_fold(&stream, from, to, None)
                    .try_collect()
                    .await
                    .expect("read_for_fold succeeds"),
            );
            let full: Vec<FoldView> = full.iter().map(fold_view_of_recorded).collect();
            let narrow: Vec<FoldView> = narrow.iter().map(fold_view).collect();
            assert_eq!(
                narrow, full,
                "the fold read of {from}..={to} matches the full read"
            );
            assert_eq!(
                narrow.len(),
                expected,
                "{from}..={to} has {expected} events"
            );
        }
        let missing: Vec<FoldItem> = store
            .read_for_fold(&unique_stream("fold-missing"), 1, Version::MAX, None)
            .try_collect()
            .await
            .expect("read_for_fold succeeds");
        assert!(missing.is_empty(), "a stream that does not exist is empty");

        let key = SnapshotKey::new(3, 0xf01d);
        let other_key = SnapshotKey::new(3, 0xf01e);
        let items = compare_snapshot_reads(&store, &stream, ALL, key).await;
        assert_eq!(items.len(), 8, "without a snapshot, the whole stream");
        assert!(items.iter().all(|i| matches!(i, ItemView::Event(_))));

        store
            .save_snapshot(Snapshot::new(
                stream.clone(),
                5,
                key,
                payload(serde_json::json!({ "sum": 15 })),
            ))
            .await
            .expect("save succeeds");
        let items = compare_snapshot_reads(&store, &stream, ALL, key).await;
        match &items[..] {
            [
                ItemView::Snapshot(5, _),
                ItemView::Event(e6),
                ItemView::Event(e7),
                ItemView::Event(e8),
            ] => assert_eq!((e6.0, e7.0, e8.0), (6, 7, 8)),
            other => panic!("expected a snapshot and three events, got {other:?}"),
        }
        let items = compare_snapshot_reads(&store, &stream, ALL, other_key).await;
        assert_eq!(items.len(), 8, "a snapshot of another key is not used");

        // A snapshot at the head: the snapshot alone.
        store
            .save_snapshot(Snapshot::new(
                stream.clone(),
                8,
                key,
                payload(serde_json::json!({ "sum": 36 })),
            ))
            .await
            .expect("save succeeds");
        let items = compare_snapshot_reads(&store, &stream, ALL, key).await;
        assert!(
            matches!(&items[..], [ItemView::Snapshot(8, _)]),
            "a snapshot at the head and no event, got {items:?}"
        );
        let missing =
            compare_snapshot_reads(&store, &unique_stream("fold-missing"), ALL, key).await;
        assert!(missing.is_empty(), "a stream that does not exist is empty");

        // A snapshot is used only inside the range asked for.
        store
            .save_snapshot(Snapshot::new(
                stream.clone(),
                4,
                other_key,
                payload(serde_json::json!({ "sum": 10 })),
            ))
            .await
            .expect("save succeeds");
        for (range, snapshot, events) in [
            ((1, 3), None, 3),
            ((1, 4), Some(4), 0),
            ((2, 6), Some(4), 2),
            ((4, 4), Some(4), 0),
            ((5, Version::MAX), None, 4),
            ((5, 4), None, 0),
        ] {
            let items = compare_snapshot_reads(&store, &stream, range, other_key).await;
            let got = match items.first() {
                Some(ItemView::Snapshot(v, _)) => Some(*v),
                _ => None,
            };
            assert_eq!(
                (got, items.len() - usize::from(got.is_some())),
                (snapshot, events),
                "the read of {range:?}"
            );
        }
    }
}

/// What a fold sees of an event: version, name, event version, payload text.
type FoldView = (Version, EventName, u32, String);

fn fold_view_of_recorded(e: &RecordedEvent) -> FoldView {
    (
        e.version,
        e.name.clone(),
        e.schema_version,
        e.payload().to_owned(),
    )
}

fn fold_view(e: &FoldEvent) -> FoldView {
    (
        e.version,
        e.name.clone(),
        e.schema_version,
        e.payload.to_string(),
    )
}

/// A snapshot as (version, payload text), or an event as a fold sees it.
#[derive(Debug, PartialEq)]
enum ItemView {
    Snapshot(Version, String),
    Event(FoldView),
}

fn item_view(item: &FoldItem) -> ItemView {
    match item {
        FoldItem::Snapshot(s) => ItemView::Snapshot(s.version, s.payload.get().to_owned()),
        FoldItem::Event(e) => ItemView::Event(fold_view(e)),
    }
}

/// `read_for_fold` of `from..=to` with `key`, checked against what it must equal: the
/// snapshot of `key` (from `load_snapshot`) if its version lies in `from..=to`, then the
/// events after it (from `read_stream`).
async fn compare_snapshot_reads<S: EventStore>(
    store: &S,
    stream: &StreamId,
    (from, to): (Version, Version),
    key: SnapshotKey,
) -> Vec<ItemView> {
    let snapshot = store
        .load_snapshot(stream, key)
        .await
        .expect("load_snapshot succeeds")
        .filter(|s| (from..=to).contains(&s.version));
    let events_from = snapshot.as_ref().map_or(from, |s| s.version + 1);
    let events: Vec<RecordedEvent> = store
        .read_stream(stream, events_from, to)
        .try_collect()
        .await
        .expect("read_stream succeeds");
    let expected: Vec<ItemView> = snapshot
        .iter()
        .map(|s| ItemView::Snapshot(s.version, s.payload.get().to_owned()))
        .chain(
            events
                .iter()
                .map(|e| ItemView::Event(fold_view_of_recorded(e))),
        )
        .collect();
    let narrow: Vec<FoldItem> = store
        .read_for_fold(stream, from, to, Some(key))
        .try_collect()
        .await
        .expect("read_for_fold succeeds");
    let narrow: Vec<ItemView> = narrow.iter().map(item_view).collect();
    assert_eq!(
        narrow, expected,
        "the fold read of {from}..={to} with a snapshot matches the snapshot and the full read"
    );
    narrow
}

/// Only the events of a fold read.
fn fold_events(items: Vec<FoldItem>) -> Vec<FoldEvent> {
    items
        .into_iter()
        .map(|item| match item {
            FoldItem::Event(e) => e,
            FoldItem::Snapshot(s) => panic!("a read without a snapshot key gave {s:?}"),
        })
        .collect()
}

/// Every version of a stream, for a fold read.
const ALL: (Version, Version) = (1, Version::MAX);
