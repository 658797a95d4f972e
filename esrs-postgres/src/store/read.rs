//! Reads: a stream, a snapshot and its tail, the global log. A stream read is one query; the
//! global log is read in pages with keyset pagination, one query per page. Rows are decoded
//! as they arrive (sqlx streams them), so a read holds one row at a time in memory, however
//! long its result.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use esrs_core::store::{FoldEvent, FoldItem, Payload, Snapshot, SnapshotKey};
use esrs_core::{DecodeError, Metadata, Position, RecordedEvent, StreamId, Version};
use futures_core::Stream;
use futures_util::StreamExt;
use serde_json::value::RawValue;
use sqlx::postgres::{PgArgumentBuffer, PgArguments, PgRow, PgTypeInfo, PgValueFormat, PgValueRef};
use sqlx::types::Json;
use sqlx::{Postgres, Row, ValueRef};

use super::PgStore;
use crate::error::to_core;

/// A PostgreSQL `xid8`: a transaction id with its epoch, which never wraps around.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Xid8(pub(crate) u64);

impl sqlx::Type<Postgres> for Xid8 {
    fn type_info() -> PgTypeInfo {
        // The built-in type `xid8` has a fixed OID.
        PgTypeInfo::with_oid(sqlx::postgres::types::Oid(5069))
    }
}

impl<'r> sqlx::Decode<'r, Postgres> for Xid8 {
    fn decode(value: PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        match value.format() {
            PgValueFormat::Binary => {
                let bytes: [u8; 8] = value.as_bytes()?.try_into()?;
                Ok(Self(u64::from_be_bytes(bytes)))
            }
            PgValueFormat::Text => Ok(Self(value.as_str()?.parse()?)),
        }
    }
}

impl sqlx::Encode<'_, Postgres> for Xid8 {
    fn encode_by_ref(
        &self,
        buf: &mut PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        buf.extend_from_slice(&self.0.to_be_bytes());
        Ok(sqlx::encode::IsNull::No)
    }
}

/// A stored integer that must be non-negative, as the store's `u64` types.
pub(crate) fn unsigned(value: i64) -> u64 {
    // Versions and sequence numbers are at least 1 by the schema's constraints.
    value.max(0).unsigned_abs()
}

/// A `u64` of the API as a bound parameter; values beyond `i64::MAX` cannot be stored, so
/// they clamp to a bound that behaves the same in every comparison the store makes.
pub(crate) fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A snapshot fingerprint as stored: the same 64 bits, as a `bigint`.
fn fingerprint(value: u64) -> i64 {
    i64::from_ne_bytes(value.to_ne_bytes())
}

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 00:00:00 UTC).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// A `timestamptz` column: in binary, microseconds since PostgreSQL's epoch, converted
/// directly (sqlx's decoder goes through calendar arithmetic, a visible cost per event).
fn timestamp(row: &PgRow, index: usize) -> Result<DateTime<Utc>, sqlx::Error> {
    let value = row.try_get_raw(index)?;
    let decode_error = |source: sqlx::error::BoxDynError| sqlx::Error::ColumnDecode {
        index: format!("{index:?}"),
        source,
    };
    if value.format() != PgValueFormat::Binary {
        return <DateTime<Utc> as sqlx::Decode<Postgres>>::decode(value).map_err(decode_error);
    }
    let bytes: [u8; 8] = value
        .as_bytes()
        .map_err(decode_error)?
        .try_into()
        .map_err(|e: std::array::TryFromSliceError| decode_error(Box::new(e)))?;
    i64::from_be_bytes(bytes)
        .checked_add(PG_EPOCH_MICROS)
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(|| decode_error("a timestamp out of range".into()))
}

/// A `json` column as a [`Payload`]: the text is checked to be JSON (without building a
/// value) and copied once, at its exact size.
fn payload(row: &PgRow, index: usize) -> Result<Payload, sqlx::Error> {
    let decode_error = |source: sqlx::error::BoxDynError| sqlx::Error::ColumnDecode {
        index: format!("{index:?}"),
        source,
    };
    let text =
        <&str as sqlx::Decode<Postgres>>::decode(row.try_get_raw(index)?).map_err(decode_error)?;
    let raw: &RawValue = serde_json::from_str(text).map_err(|e| decode_error(Box::new(e)))?;
    Ok(raw.to_owned())
}

/// A row of `stream` at `version` whose `column` did not decode: a
/// [`DecodeError::MalformedRow`] that names the event, as other decode errors do.
fn malformed<'a>(
    stream: &'a StreamId,
    version: Version,
    column: &'static str,
) -> impl FnOnce(sqlx::Error) -> esrs_core::Error + 'a {
    move |error| {
        let source: esrs_core::BoxError = match error {
            sqlx::Error::ColumnDecode { source, .. } | sqlx::Error::Decode(source) => source,
            other => Box::new(other),
        };
        esrs_core::Error::Decode {
            stream: stream.clone(),
            version,
            source: DecodeError::MalformedRow { column, source },
        }
    }
}

/// An event version as stored (`integer`), which must fit the API's `u32`.
fn stored_event_version(value: i32) -> Result<u32, sqlx::Error> {
    u32::try_from(value).map_err(|e| sqlx::Error::ColumnDecode {
        index: "event_version".into(),
        source: Box::new(e),
    })
}

/// Decodes the event whose columns start at `base`: sequence, transaction id, version,
/// name, event version, payload, metadata, recorded time.
///
/// The store's queries fix the columns' types, so they are read by position without the
/// per-column type check; a value that does not decode is still an error, which names the
/// stream and the version of the row once they are known
/// ([`DecodeError::MalformedRow`]).
fn decode_event(
    row: &PgRow,
    base: usize,
    stream: StreamId,
) -> Result<RecordedEvent, esrs_core::Error> {
    let version: i64 = row.try_get_unchecked(base + 2).map_err(to_core)?;
    let version = unsigned(version);
    let sequence: i64 = row
        .try_get_unchecked(base)
        .map_err(malformed(&stream, version, "sequence"))?;
    let transaction: Xid8 =
        row.try_get_unchecked(base + 1)
            .map_err(malformed(&stream, version, "transaction_id"))?;
    let name: String = row
        .try_get_unchecked(base + 3)
        .map_err(malformed(&stream, version, "name"))?;
    let event_version = row
        .try_get_unchecked(base + 4)
        .and_then(stored_event_version)
        .map_err(malformed(&stream, version, "event_version"))?;
    // The text as stored (the column is `json`, which PostgreSQL checks on the way in).
    let payload: &str = row
        .try_get_unchecked(base + 5)
        .map_err(malformed(&stream, version, "payload"))?;
    let metadata = row
        .try_get_raw(base + 6)
        .and_then(|raw| {
            if raw.is_null() {
                return Ok(Metadata::default());
            }
            let Json(metadata): Json<Metadata> = row.try_get_unchecked(base + 6)?;
            Ok(metadata)
        })
        .map_err(malformed(&stream, version, "metadata"))?;
    let recorded_at =
        timestamp(row, base + 7).map_err(malformed(&stream, version, "recorded_at"))?;
    Ok(RecordedEvent::new(
        Position::new(transaction.0, unsigned(sequence)),
        stream,
        version,
        name,
        event_version,
        payload,
        metadata,
        recorded_at,
    ))
}

/// Decodes the event of `stream` whose columns start at `base` as a fold needs it: version,
/// name, event version, payload (read by position, as [`decode_event`] does). The payload is
/// copied as stored, not checked: the event's decode parses it once, and reports text that
/// is not JSON.
fn decode_fold_event(
    row: &PgRow,
    base: usize,
    stream: &StreamId,
) -> Result<FoldEvent, esrs_core::Error> {
    let version: i64 = row.try_get_unchecked(base).map_err(to_core)?;
    let version = unsigned(version);
    let name: String = row
        .try_get_unchecked(base + 1)
        .map_err(malformed(stream, version, "name"))?;
    let event_version = row
        .try_get_unchecked(base + 2)
        .and_then(stored_event_version)
        .map_err(malformed(stream, version, "event_version"))?;
    // The text as stored: the event's decode parses it, once.
    let payload: &str = row
        .try_get_unchecked(base + 3)
        .map_err(malformed(stream, version, "payload"))?;
    Ok(FoldEvent::new(version, name, event_version, payload))
}

/// The first and the longest pause of a read waiting for an older transaction.
const MIN_SETTLE_BACKOFF: Duration = Duration::from_millis(1);
const MAX_SETTLE_BACKOFF: Duration = Duration::from_millis(25);

type PgQuery<'a> = sqlx::query::Query<'a, Postgres, PgArguments>;

/// What a read does next.
enum Page<'a> {
    /// Runs the query and decodes its rows.
    Query(PgQuery<'a>),
    /// Asks `check` whether committed events lie beyond the read's cursor, and whether an
    /// older open transaction holds some of them back; [`Pages::read_on`] hears whether
    /// to read on (after a pause of `pause` if events are held back).
    Settle { check: PgQuery<'a>, pause: Duration },
    /// The read is complete.
    Done,
}

/// A read that runs as one query or a series of page queries.
trait Pages<'a>: Send + 'a {
    type Item: Send + 'a;
    /// What to do next.
    fn next_page(&mut self) -> Page<'a>;
    /// Decodes one row and moves the cursor past it.
    fn decode(&mut self, row: &PgRow) -> esrs_core::Result<Self::Item>;
    /// The answer of a [`Page::Settle`] check: whether committed events lie beyond the
    /// cursor (the read goes on), or not (the read is complete).
    fn read_on(&mut self, _beyond: bool) {}
    /// A query returned all its rows.
    fn complete(&mut self) {}
}

type Items<'a, T> = Pin<Box<dyn Stream<Item = esrs_core::Result<T>> + Send + 'a>>;

/// Streams the items of `pages`, one query at a time, each on a connection leased for it
/// (parked again when the query has returned all its rows).
fn paged<'a, P: Pages<'a>>(
    store: &'a PgStore,
    mut pages: P,
    span: tracing::Span,
) -> Items<'a, P::Item> {
    let items = async_stream::stream! {
        loop {
            match pages.next_page() {
                Page::Done => break,
                Page::Query(query) => {
                    let mut lease = match store.lease().await {
                        Ok(lease) => lease,
                        Err(error) => {
                            yield Err(to_core(error));
                            break;
                        }
                    };
                    let mut rows = query.fetch(lease.conn());
                    let end = loop {
                        match rows.next().await {
                            Some(Ok(row)) => match pages.decode(&row) {
                                Ok(item) => yield Ok(item),
                                Err(error) => break End::Decode(error),
                            },
                            Some(Err(error)) => break End::Query(error),
                            None => break End::Complete,
                        }
                    };
                    drop(rows);
                    let error = match end {
                        End::Complete => {
                            let _ = lease.finish(Ok(()));
                            pages.complete();
                            continue;
                        }
                        // The rest of the answer is unread: the connection goes back to
                        // the pool, which recovers it.
                        End::Decode(error) => {
                            drop(lease);
                            error
                        }
                        End::Query(error) => match lease.finish::<()>(Err(error)) {
                            Err(error) => to_core(error),
                            Ok(()) => continue,
                        },
                    };
                    yield Err(error);
                    break;
                }
                Page::Settle { check, pause } => {
                    let beyond: Result<(bool, bool), sqlx::Error> = match store.lease().await {
                        Ok(mut lease) => {
                            let row = check.fetch_one(lease.conn()).await;
                            let beyond = row.map(|row| {
                                Ok((row.try_get_unchecked(0)?, row.try_get_unchecked(1)?))
                            });
                            lease.finish(beyond).and_then(|beyond| beyond)
                        }
                        Err(error) => Err(error),
                    };
                    match beyond {
                        // Events are held back: wait for the older transaction, then read on.
                        Ok((true, true)) => {
                            tokio::time::sleep(pause).await;
                            pages.read_on(true);
                        }
                        // The older transaction ended after the last page: read on at once.
                        Ok((true, false)) => pages.read_on(true),
                        Ok((false, _)) => pages.read_on(false),
                        Err(error) => {
                            yield Err(to_core(error));
                            break;
                        }
                    }
                }
            }
        }
    };
    Box::pin(Read {
        items: Box::pin(items),
        done: false,
        span,
        started: Instant::now(),
        count: 0,
    })
}

/// How a query of a read ended.
enum End {
    /// Every row was read and decoded.
    Complete,
    /// A row did not decode; the rest of the answer is unread.
    Decode(esrs_core::Error),
    /// The query failed.
    Query(sqlx::Error),
}

/// A read's items, counted, in the read's one span (entered while the read is polled, only
/// when it is enabled).
struct Read<S> {
    items: S,
    done: bool,
    span: tracing::Span,
    started: Instant,
    count: u64,
}

impl<T, S: Stream<Item = esrs_core::Result<T>> + Unpin> Stream for Read<S> {
    type Item = esrs_core::Result<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let _entered = (!this.span.is_disabled()).then(|| this.span.enter());
        let next = this.items.poll_next_unpin(cx);
        match &next {
            Poll::Ready(Some(Ok(_))) => this.count += 1,
            Poll::Ready(Some(Err(_))) => this.done = true,
            Poll::Ready(None) => {
                this.done = true;
                tracing::debug!(
                    events = this.count,
                    elapsed_us = this.started.elapsed().as_micros() as u64,
                    "read complete"
                );
            }
            Poll::Pending => {}
        }
        next
    }
}

/// Decodes a row of a stream read into an item and its version.
type DecodeRow<I> = fn(&PgRow, &StreamId) -> esrs_core::Result<(I, Version)>;

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
    /// The last version read.
    last: Version,
    /// The events table as the store knew it when the query started.
    table: super::seen::Table,
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

    fn decode(&mut self, row: &PgRow) -> esrs_core::Result<I> {
        let (item, version) = (self.event)(row, &self.stream)?;
        self.last = version;
        Ok(item)
    }

    fn complete(&mut self) {
        self.store
            .inner
            .seen
            .record(&self.stream, self.last, self.table);
    }
}

/// The global log after a position, up to the oldest running transaction.
///
/// When a page comes back short, the read has reached the oldest running transaction. If
/// committed events lie beyond it (an older transaction is still open), the read waits for
/// it, with a short backoff and up to the store's settle time, then reads on; otherwise, or
/// when the time is up, it ends.
struct LogPages<'a> {
    store: &'a PgStore,
    after: Position,
    in_page: u32,
    started: bool,
    /// A settle check found events after the cursor: read the next page.
    retry: bool,
    caught_up: bool,
    settle_until: Option<Instant>,
    backoff: Duration,
    last_stream: Option<StreamId>,
}

impl<'a> Pages<'a> for LogPages<'a> {
    type Item = RecordedEvent;

    fn next_page(&mut self) -> Page<'a> {
        let page_size = self.store.inner.page_size;
        let short = self.started && self.in_page < page_size && !self.retry;
        self.started = true;
        self.retry = false;
        self.in_page = 0;
        if !short {
            return Page::Query(
                sqlx::query(&self.store.sql().read_all)
                    .bind(Xid8(self.after.transaction_id))
                    .bind(signed(self.after.sequence))
                    .bind(i64::from(page_size)),
            );
        }
        if self.caught_up {
            return Page::Done;
        }
        let now = Instant::now();
        let until = *self
            .settle_until
            .get_or_insert(now + self.store.inner.settle_time);
        if now >= until {
            return Page::Done;
        }
        let pause = self.backoff.min(until - now);
        self.backoff = (self.backoff * 2).min(MAX_SETTLE_BACKOFF);
        Page::Settle {
            check: sqlx::query(&self.store.sql().events_beyond)
                .bind(Xid8(self.after.transaction_id))
                .bind(signed(self.after.sequence)),
            pause,
        }
    }

    fn read_on(&mut self, beyond: bool) {
        if beyond {
            self.retry = true;
        } else {
            self.caught_up = true;
        }
    }

    fn decode(&mut self, row: &PgRow) -> esrs_core::Result<RecordedEvent> {
        // Consecutive events of one stream share its id.
        let stream: &str = row.try_get_unchecked(8).map_err(to_core)?;
        let stream = match &self.last_stream {
            Some(last) if last.as_str() == stream => last.clone(),
            _ => {
                let id = StreamId::from_stored(stream);
                self.last_stream = Some(id.clone());
                id
            }
        };
        let event = decode_event(row, 0, stream)?;
        self.in_page += 1;
        self.after = event.position;
        Ok(event)
    }
}

/// A stream's snapshot and the events after it, in one query: with full envelopes, or only
/// what a fold needs. The first column of a row says whether it is the snapshot.
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
    /// The columns of the snapshot's version and payload.
    version_column: usize,
    payload_column: usize,
    /// Decodes an event row (its columns start at 1).
    event: fn(&PgRow, &StreamId) -> esrs_core::Result<I>,
    snapshot: fn(Snapshot) -> I,
    /// The last version read (of an event, or the snapshot's), in the version column of
    /// both kinds of rows.
    last: Version,
    /// The events table as the store knew it when the query started.
    table: super::seen::Table,
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

    fn decode(&mut self, row: &PgRow) -> esrs_core::Result<I> {
        let is_snapshot: bool = row.try_get_unchecked(0).map_err(to_core)?;
        let version: i64 = row
            .try_get_unchecked(self.version_column)
            .map_err(to_core)?;
        self.last = unsigned(version);
        if !is_snapshot {
            self.events = true;
            return (self.event)(row, &self.stream);
        }
        if self.events {
            // The snapshot must come first, or a fold would skip the events before it.
            return Err(to_core(sqlx::Error::Protocol(
                "the snapshot row came after events of its stream".into(),
            )));
        }
        let payload = payload(row, self.payload_column).map_err(to_core)?;
        Ok((self.snapshot)(Snapshot::new(
            self.stream.clone(),
            unsigned(version),
            self.key,
            payload,
        )))
    }

    fn complete(&mut self) {
        self.store
            .inner
            .seen
            .record(&self.stream, self.last, self.table);
    }
}

impl PgStore {
    pub(super) fn read_fold_pages(
        &self,
        stream: &StreamId,
        from: Version,
        to: Version,
    ) -> esrs_core::store::FoldStream<'_> {
        let span = tracing::debug_span!("esrs.pg.read_for_fold", stream = %stream, from, to);
        paged(
            self,
            StreamPages {
                store: self,
                sql: &self.sql().read_stream_for_fold,
                stream: stream.clone(),
                from: signed(from.max(1)),
                to: signed(to),
                started: false,
                event: |row, stream| {
                    decode_fold_event(row, 0, stream).map(|e| {
                        let v = e.version;
                        (FoldItem::Event(e), v)
                    })
                },
                last: 0,
                table: 0,
            },
            span,
        )
    }

    pub(super) fn read_fold_with_snapshot_pages(
        &self,
        stream: &StreamId,
        from: Version,
        to: Version,
        key: SnapshotKey,
    ) -> esrs_core::store::FoldStream<'_> {
        let span = tracing::debug_span!(
            "esrs.pg.load_for_fold",
            stream = %stream,
            snapshot_version = key.schema_version,
        );
        paged(
            self,
            SnapshotPages {
                store: self,
                sql: &self.sql().read_with_snapshot_for_fold,
                key,
                from: signed(from.max(1)),
                to: signed(to),
                stream: stream.clone(),
                started: false,
                events: false,
                version_column: 1,
                payload_column: 4,
                event: |row, stream| decode_fold_event(row, 1, stream).map(FoldItem::Event),
                snapshot: FoldItem::Snapshot,
                last: 0,
                table: 0,
            },
            span,
        )
    }

    pub(super) fn read_stream_pages(
        &self,
        stream: &StreamId,
        from: Version,
        to: Version,
    ) -> esrs_core::store::EventStream<'_> {
        let span = tracing::debug_span!("esrs.pg.read_stream", stream = %stream, from, to);
        paged(
            self,
            StreamPages {
                store: self,
                sql: &self.sql().read_stream,
                stream: stream.clone(),
                from: signed(from.max(1)),
                to: signed(to),
                started: false,
                event: |row, stream| {
                    decode_event(row, 0, stream.clone()).map(|e| {
                        let v = e.version;
                        (e, v)
                    })
                },
                last: 0,
                table: 0,
            },
            span,
        )
    }

    pub(super) fn read_all_pages(&self, after: Position) -> esrs_core::store::EventStream<'_> {
        let span = tracing::debug_span!("esrs.pg.read_all", after = %after);
        paged(
            self,
            LogPages {
                store: self,
                after,
                in_page: 0,
                started: false,
                retry: false,
                caught_up: false,
                settle_until: None,
                backoff: MIN_SETTLE_BACKOFF,
                last_stream: None,
            },
            span,
        )
    }

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
        rows.iter()
            .map(|row| {
                decode_event(row, 0, stream.clone()).map_err(|e| sqlx::Error::Decode(Box::new(e)))
            })
            .collect()
    }

    pub(super) async fn fetch_snapshot(
        &self,
        stream: &StreamId,
        key: SnapshotKey,
    ) -> esrs_core::Result<Option<Snapshot>> {
        let mut lease = self.lease().await.map_err(to_core)?;
        let row = sqlx::query(&self.sql().load_snapshot)
            .bind(stream.as_str())
            .bind(i64::from(key.schema_version))
            .bind(fingerprint(key.fingerprint))
            .fetch_optional(lease.conn())
            .await;
        let row = lease.finish(row).map_err(to_core)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let version: i64 = row.try_get(0).map_err(to_core)?;
        let payload = payload(&row, 1).map_err(to_core)?;
        Ok(Some(Snapshot::new(
            stream.clone(),
            unsigned(version),
            key,
            payload,
        )))
    }

    pub(super) async fn store_snapshot(&self, snapshot: Snapshot) -> esrs_core::Result<()> {
        let mut lease = self.lease().await.map_err(to_core)?;
        let done = sqlx::query(&self.sql().save_snapshot)
            .bind(snapshot.stream.as_str())
            .bind(signed(snapshot.version))
            .bind(i64::from(snapshot.key.schema_version))
            .bind(fingerprint(snapshot.key.fingerprint))
            .bind(snapshot.payload.get())
            .bind(esrs_core::store::SNAPSHOT_KEYS_PER_STREAM as i64)
            .execute(lease.conn())
            .await;
        lease.finish(done).map_err(to_core)?;
        Ok(())
    }

    pub(super) async fn fetch_stream_version(
        &self,
        stream: &StreamId,
    ) -> esrs_core::Result<Version> {
        let mut lease = self.lease().await.map_err(to_core)?;
        let version = sqlx::query_scalar::<_, i64>(&self.sql().stream_version)
            .bind(stream.as_str())
            .fetch_one(lease.conn())
            .await;
        let version = lease.finish(version).map_err(to_core)?;
        Ok(unsigned(version))
    }

    /// Whether events after `after` are readable by [`read_all`](esrs_core::EventStore::read_all) now.
    pub(super) async fn has_events_after(&self, after: Position) -> esrs_core::Result<bool> {
        let mut lease = self.lease().await.map_err(to_core)?;
        let after = sqlx::query_scalar(&self.sql().events_after)
            .bind(Xid8(after.transaction_id))
            .bind(signed(after.sequence))
            .fetch_one(lease.conn())
            .await;
        lease.finish(after).map_err(to_core)
    }
}
