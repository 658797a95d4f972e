//! Reads of one stream: its events, or what a fold needs of them after a snapshot; each is
//! one query, whatever the stream's length.

use esrs_core::store::{EventStream, FoldItem, FoldStream, Snapshot, SnapshotKey};
use esrs_core::{RecordedEvent, StreamId, Version};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::decode::{
    FOLD_EVENT_COLUMNS, Shared, decode_event, decode_fold_event, fingerprint, payload, signed,
    unsigned,
};
use super::{Page, Pages, paged};
use crate::error::to_core;
use crate::store::PgStore;
use crate::store::sql::pg_type::{BOOL, INT8};
use crate::store::sql::{Column, concat, index, offset};

/// Decodes a row of a stream read into an item and its version.
type DecodeRow<I> = fn(&PgRow, &StreamId, &mut Shared) -> esrs_core::Result<(I, Version)>;

/// The events of one stream with versions `from..=to`, in one query: with full envelopes
/// (`read_stream`) or only what a fold needs (`read_for_fold` without a snapshot).
struct StreamPages<'a, I> {
    store: &'a PgStore,
    sql: &'a str,
    stream: StreamId,
    from: i64,
    to: i64,
    started: bool,
    /// Decodes a row, giving the item and its version.
    event: DecodeRow<I>,
    shared: Shared,
    /// The last version read.
    last: Version,
    /// The events table as the store knew it when the query started.
    table: crate::store::connection::Table,
}

impl<'a, I: Send + 'a> Pages<'a> for StreamPages<'a, I> {
    type Item = I;

    fn next_page(&mut self) -> Page<'a> {
        if self.started || self.from > self.to {
            return Page::Done;
        }
        self.started = true;
        self.table = self.store.inner.seen.table();
        Page::Query(
            sqlx::query(self.sql)
                .bind(self.stream.as_str().to_owned())
                .bind(self.from)
                .bind(self.to),
        )
    }

    fn decode(&mut self, row: &PgRow) -> esrs_core::Result<Option<I>> {
        let (item, version) = (self.event)(row, &self.stream, &mut self.shared)?;
        self.last = version;
        Ok(Some(item))
    }

    fn complete(&mut self) -> Option<I> {
        self.store
            .inner
            .seen
            .record(&self.stream, self.last, self.table);
        None
    }
}

/// The columns of a row of `read_for_fold_with_snapshot.sql`: whether it is the snapshot,
/// then an event as a fold needs it ([`FOLD_EVENT_COLUMNS`]), whose version and payload
/// columns are the snapshot's version and payload in the snapshot's row.
pub(crate) const FOLD_WITH_SNAPSHOT_COLUMNS: &[Column] =
    &concat::<5>(&[&[Column::new("is_snapshot", BOOL)], FOLD_EVENT_COLUMNS]);

/// Where a row of a snapshot read holds its parts.
const IS_SNAPSHOT: usize = index(FOLD_WITH_SNAPSHOT_COLUMNS, "is_snapshot");
const FOLD_EVENT: usize = offset(FOLD_WITH_SNAPSHOT_COLUMNS, FOLD_EVENT_COLUMNS);
const SNAPSHOT_VERSION: usize = index(FOLD_WITH_SNAPSHOT_COLUMNS, "version");
const SNAPSHOT_PAYLOAD: usize = index(FOLD_WITH_SNAPSHOT_COLUMNS, "payload");

/// The column of `stream_version.sql`.
pub(crate) const STREAM_VERSION_COLUMNS: &[Column] = &[Column::new("version", INT8)];
const STREAM_VERSION: usize = index(STREAM_VERSION_COLUMNS, "version");

/// A stream's snapshot and the events after it, in one query ([`FOLD_WITH_SNAPSHOT_COLUMNS`]).
/// The first column of a row says whether it is the snapshot.
struct SnapshotPages<'a, I> {
    store: &'a PgStore,
    sql: &'a str,
    key: SnapshotKey,
    /// The versions asked for: the snapshot's must lie in them, and the events end at `to`.
    from: i64,
    to: i64,
    stream: StreamId,
    started: bool,
    /// Events were returned: a snapshot row after them is out of order.
    events: bool,
    /// Decodes an event row.
    event: fn(&PgRow, &StreamId, &mut Shared) -> esrs_core::Result<I>,
    shared: Shared,
    snapshot: fn(Snapshot) -> I,
    /// The last version read (of an event, or the snapshot's), in the version column of
    /// both kinds of rows.
    last: Version,
    /// The events table as the store knew it when the query started.
    table: crate::store::connection::Table,
}

impl<'a, I: Send + 'a> Pages<'a> for SnapshotPages<'a, I> {
    type Item = I;

    fn next_page(&mut self) -> Page<'a> {
        if self.started || self.from > self.to {
            return Page::Done;
        }
        self.started = true;
        self.table = self.store.inner.seen.table();
        Page::Query(
            sqlx::query(self.sql)
                .bind(self.stream.as_str().to_owned())
                .bind(i64::from(self.key.schema_version))
                .bind(fingerprint(self.key.fingerprint))
                .bind(self.from)
                .bind(self.to),
        )
    }

    fn decode(&mut self, row: &PgRow) -> esrs_core::Result<Option<I>> {
        self.decode_row(row).map(Some)
    }

    fn complete(&mut self) -> Option<I> {
        self.store
            .inner
            .seen
            .record(&self.stream, self.last, self.table);
        None
    }
}

impl<I> SnapshotPages<'_, I> {
    /// A row of the snapshot read: the snapshot, or an event after it.
    fn decode_row(&mut self, row: &PgRow) -> esrs_core::Result<I> {
        let is_snapshot: bool = row.try_get_unchecked(IS_SNAPSHOT).map_err(to_core)?;
        let version: i64 = row.try_get_unchecked(SNAPSHOT_VERSION).map_err(to_core)?;
        self.last = unsigned(version);
        if !is_snapshot {
            self.events = true;
            return (self.event)(row, &self.stream, &mut self.shared);
        }
        if self.events {
            // The snapshot must come first, or a fold would skip the events before it.
            return Err(to_core(sqlx::Error::Protocol(
                "the snapshot row came after events of its stream".into(),
            )));
        }
        let payload = payload(row, SNAPSHOT_PAYLOAD).map_err(to_core)?;
        Ok((self.snapshot)(Snapshot::new(
            self.stream.clone(),
            unsigned(version),
            self.key,
            payload,
        )))
    }
}

/// The events of `stream` with versions `from..=to`, with full envelopes, in one query.
pub(in crate::store) fn read_stream<'a>(
    store: &'a PgStore,
    stream: &StreamId,
    from: Version,
    to: Version,
) -> EventStream<'a> {
    let span = db_span!("esrs.pg.read_stream", store, "read_stream", "events", stream = %stream, from, to, events = tracing::field::Empty);
    paged(
        store,
        StreamPages {
            store,
            sql: &store.sql().read_stream,
            stream: stream.clone(),
            from: signed(from.max(1)),
            to: signed(to),
            started: false,
            event: |row, stream, shared| {
                decode_event(row, 0, stream.clone(), shared).map(|e| {
                    let v = e.version;
                    (e, v)
                })
            },
            shared: Shared::default(),
            last: 0,
            table: 0,
        },
        span,
    )
}

/// What a fold needs of the events of `stream` with versions `from..=to`, after the
/// stream's snapshot of `snapshot` if it has one in that range: one query either way.
pub(in crate::store) fn read_for_fold<'a>(
    store: &'a PgStore,
    stream: &StreamId,
    from: Version,
    to: Version,
    snapshot: Option<SnapshotKey>,
) -> FoldStream<'a> {
    let Some(key) = snapshot else {
        let span = db_span!("esrs.pg.read_for_fold", store, "read_for_fold", "events", stream = %stream, from, to, events = tracing::field::Empty);
        return paged(
            store,
            StreamPages {
                store,
                sql: &store.sql().read_for_fold,
                stream: stream.clone(),
                from: signed(from.max(1)),
                to: signed(to),
                started: false,
                event: |row, stream, shared| {
                    decode_fold_event(row, 0, stream, shared).map(|e| {
                        let v = e.version;
                        (FoldItem::Event(e), v)
                    })
                },
                shared: Shared::default(),
                last: 0,
                table: 0,
            },
            span,
        );
    };
    let span = db_span!(
        "esrs.pg.read_for_fold",
        store,
        "read_for_fold", "events",
        stream = %stream,
        from,
        to,
        snapshot_version = key.schema_version,
        events = tracing::field::Empty,
    );
    paged(
        store,
        SnapshotPages {
            store,
            sql: &store.sql().read_for_fold_with_snapshot,
            key,
            from: signed(from.max(1)),
            to: signed(to),
            stream: stream.clone(),
            started: false,
            events: false,
            event: |row, stream, shared| {
                decode_fold_event(row, FOLD_EVENT, stream, shared).map(FoldItem::Event)
            },
            shared: Shared::default(),
            snapshot: FoldItem::Snapshot,
            last: 0,
            table: 0,
        },
        span,
    )
}

/// The version of `stream`: that of its last event, 0 if it has none.
pub(in crate::store) async fn stream_version(
    store: &PgStore,
    stream: &StreamId,
) -> esrs_core::Result<Version> {
    let mut lease = store.connections().lease().await.map_err(to_core)?;
    let row = sqlx::query(&store.sql().stream_version)
        .bind(stream.as_str())
        .fetch_one(&mut lease)
        .await
        .map_err(to_core)?;
    let version: i64 = row.try_get(STREAM_VERSION).map_err(to_core)?;
    Ok(unsigned(version))
}

impl PgStore {
    /// The events of `stream` with versions `from..=to`, read on `conn` (in the caller's
    /// transaction, say). A row that does not decode is a [`sqlx::Error::Decode`] whose
    /// source is the [`esrs_core::Error::Decode`] naming it.
    pub(crate) async fn events_in(
        &self,
        conn: &mut sqlx::PgConnection,
        stream: &StreamId,
        from: Version,
        to: Version,
    ) -> Result<Vec<RecordedEvent>, sqlx::Error> {
        let rows = sqlx::query(&self.sql().read_stream)
            .bind(stream.as_str())
            .bind(signed(from))
            .bind(signed(to))
            .fetch_all(conn)
            .await?;
        let mut shared = Shared::default();
        rows.iter()
            .map(|row| {
                decode_event(row, 0, stream.clone(), &mut shared)
                    .map_err(|e| sqlx::Error::Decode(Box::new(e)))
            })
            .collect()
    }
}
