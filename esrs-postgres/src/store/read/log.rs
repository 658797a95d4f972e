//! Reads of the global log: in pages, in commit-safe order, waiting briefly for older
//! transactions still open.

use std::time::{Duration, Instant};

use esrs_core::store::EventStream;
use esrs_core::{Position, RecordedEvent};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::decode::{EVENT_COLUMNS, Shared, Xid8, decode_event, signed, unsigned};
use super::{Page, Pages, paged};
use crate::error::to_core;
use crate::store::PgStore;
use crate::store::sql::pg_type::{BOOL, INT8, TEXT, XID8};
use crate::store::sql::{Column, concat, index, offset};

/// The columns of a page of the global log: an event ([`EVENT_COLUMNS`]), then its stream.
pub(crate) const LOG_COLUMNS: &[Column] =
    &concat::<10>(&[EVENT_COLUMNS, &[Column::new("stream_id", TEXT)]]);

/// Where a page's row holds its event, and its stream.
pub(super) const LOG_EVENT: usize = offset(LOG_COLUMNS, EVENT_COLUMNS);
const LOG_STREAM_ID: usize = index(LOG_COLUMNS, "stream_id");

/// The column of `events_after.sql`: whether events after the position are readable now.
pub(crate) const EVENTS_AFTER_COLUMNS: &[Column] = &[Column::new("readable", BOOL)];
const READABLE: usize = index(EVENTS_AFTER_COLUMNS, "readable");

/// The columns of the settle check (`events_beyond.sql`).
pub(crate) const EVENTS_BEYOND_COLUMNS: &[Column] =
    &[Column::new("beyond", BOOL), Column::new("held_back", BOOL)];
const BEYOND: usize = index(EVENTS_BEYOND_COLUMNS, "beyond");
const HELD_BACK: usize = index(EVENTS_BEYOND_COLUMNS, "held_back");

/// The columns of `head_position.sql`: the position of the last readable event.
pub(crate) const HEAD_POSITION_COLUMNS: &[Column] = &[
    Column::new("transaction_id", XID8),
    Column::new("sequence", INT8),
];
const HEAD_TRANSACTION_ID: usize = index(HEAD_POSITION_COLUMNS, "transaction_id");
const HEAD_SEQUENCE: usize = index(HEAD_POSITION_COLUMNS, "sequence");

/// The first and the longest pause of a read waiting for an older transaction.
const MIN_SETTLE_BACKOFF: Duration = Duration::from_millis(1);
const MAX_SETTLE_BACKOFF: Duration = Duration::from_millis(25);

/// A full page read in less than this makes the next page of a log read twice as large.
const GROW_WITHIN: Duration = Duration::from_millis(100);
/// A page that took longer than this makes the next page of a log read half as large.
const SHRINK_AFTER: Duration = Duration::from_secs(1);

/// How many rows the next page of a log read asks for: the store's `page_size` first;
/// after a full page read quickly (its rows decoded and taken by the reader within
/// [`GROW_WITHIN`]), twice as many, up to its `max_page_size`; after a page that took longer
/// than [`SHRINK_AFTER`] (a slow reader), half as many, down to `page_size` again. A fast
/// replay so pays for few queries and their round trips, while a page's query stays short
/// in time however slow its reader.
#[derive(Debug)]
pub(super) struct PageLimit {
    rows: u32,
    min: u32,
    max: u32,
    started: Instant,
}

impl PageLimit {
    pub(super) fn new(store: &PgStore) -> Self {
        Self::between(store.inner.page_size, store.inner.max_page_size)
    }

    /// Pages of `min` rows first, growing up to `max` (at least `min`).
    fn between(min: u32, max: u32) -> Self {
        Self {
            rows: min,
            min,
            max: max.max(min),
            started: Instant::now(),
        }
    }

    /// The rows of the next page.
    pub(super) fn rows(&self) -> u32 {
        self.rows
    }

    /// A page of [`rows`](Self::rows) starts, now.
    pub(super) fn start(&mut self) {
        self.started = Instant::now();
    }

    /// The page that started last came back with `rows` rows, all taken by the reader.
    pub(super) fn end(&mut self, rows: u32) {
        let took = self.started.elapsed();
        if rows >= self.rows && took < GROW_WITHIN {
            self.rows = self.rows.saturating_mul(2).min(self.max);
        } else if took > SHRINK_AFTER {
            self.rows = (self.rows / 2).max(self.min);
        }
    }
}

/// The wait of a log read whose page came back short, for older transactions still open:
/// a settle check with a growing pause, up to the store's settle time.
#[derive(Debug)]
pub(super) struct Settle {
    until: Option<Instant>,
    backoff: Duration,
}

impl Settle {
    pub(super) fn new() -> Self {
        Self {
            until: None,
            backoff: MIN_SETTLE_BACKOFF,
        }
    }

    /// The next page of a read at `after` that reached the end of what is readable: a
    /// settle check, or the end once the settle time is up.
    pub(super) fn next<'a>(&mut self, store: &'a PgStore, after: Position) -> Page<'a> {
        let now = Instant::now();
        let until = *self.until.get_or_insert(now + store.inner.settle_time);
        if now >= until {
            return Page::Done;
        }
        let pause = self.backoff.min(until - now);
        self.backoff = (self.backoff * 2).min(MAX_SETTLE_BACKOFF);
        Page::Settle {
            check: sqlx::query(&store.sql().events_beyond)
                .bind(Xid8(after.transaction_id))
                .bind(signed(after.sequence)),
            pause,
        }
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
    limit: PageLimit,
    in_page: u32,
    started: bool,
    /// A settle check found events after the cursor: read the next page.
    retry: bool,
    caught_up: bool,
    settle: Settle,
    shared: Shared,
}

impl<'a> Pages<'a> for LogPages<'a> {
    type Item = RecordedEvent;

    fn next_page(&mut self) -> Page<'a> {
        let short = self.started && self.in_page < self.limit.rows() && !self.retry;
        if self.started {
            self.limit.end(self.in_page);
        }
        self.started = true;
        self.retry = false;
        self.in_page = 0;
        if !short {
            self.limit.start();
            return Page::Query(
                sqlx::query(&self.store.sql().read_all)
                    .bind(Xid8(self.after.transaction_id))
                    .bind(signed(self.after.sequence))
                    .bind(i64::from(self.limit.rows())),
            );
        }
        if self.caught_up {
            return Page::Done;
        }
        self.settle.next(self.store, self.after)
    }

    fn read_on(&mut self, beyond: bool) {
        if beyond {
            self.retry = true;
        } else {
            self.caught_up = true;
        }
    }

    fn decode(&mut self, row: &PgRow) -> esrs_core::Result<Option<RecordedEvent>> {
        let stream = self.shared.stream(row, LOG_STREAM_ID)?;
        let event = decode_event(row, LOG_EVENT, stream, &mut self.shared)?;
        self.in_page += 1;
        self.after = event.position;
        Ok(Some(event))
    }
}

/// The answer of the settle check ([`EVENTS_BEYOND_COLUMNS`]): whether committed events lie
/// beyond the cursor, and whether an older open transaction holds some of them back.
pub(super) fn settle_check(row: &PgRow) -> Result<(bool, bool), sqlx::Error> {
    Ok((
        row.try_get_unchecked(BEYOND)?,
        row.try_get_unchecked(HELD_BACK)?,
    ))
}

/// The events of the global log after `after`, in pages, up to the oldest running
/// transaction.
pub(in crate::store) fn read_all(store: &PgStore, after: Position) -> EventStream<'_> {
    let span = db_span!("esrs.pg.read_all", store, "read_all", "events", after = %after, events = tracing::field::Empty);
    paged(
        store,
        LogPages {
            store,
            after,
            limit: PageLimit::new(store),
            in_page: 0,
            started: false,
            retry: false,
            caught_up: false,
            settle: Settle::new(),
            shared: Shared::default(),
        },
        span,
    )
}

impl PgStore {
    /// The position of the last event [`read_all`](esrs_core::EventStore::read_all) can
    /// return now, if any: the head a projection measures its lag against.
    pub async fn head_position(&self) -> esrs_core::Result<Option<Position>> {
        let mut lease = self.connections().lease().await.map_err(to_core)?;
        let row = sqlx::query(&self.sql().head_position)
            .fetch_optional(&mut lease)
            .await
            .map_err(to_core)?;
        drop(lease);
        row.map(|row| {
            let transaction: Xid8 = row.try_get(HEAD_TRANSACTION_ID)?;
            let sequence: i64 = row.try_get(HEAD_SEQUENCE)?;
            Ok(Position::new(transaction.0, unsigned(sequence)))
        })
        .transpose()
        .map_err(to_core)
    }

    /// Whether events after `after` are readable by
    /// [`read_all`](esrs_core::EventStore::read_all) now.
    pub(in crate::store) async fn has_events_after(
        &self,
        after: Position,
    ) -> esrs_core::Result<bool> {
        let mut lease = self.connections().lease().await.map_err(to_core)?;
        let row = sqlx::query(&self.sql().events_after)
            .bind(Xid8(after.transaction_id))
            .bind(signed(after.sequence))
            .fetch_one(&mut lease)
            .await
            .map_err(to_core)?;
        row.try_get(READABLE).map_err(to_core)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page that took `took`, with `rows` rows.
    fn page(limit: &mut PageLimit, rows: u32, took: Duration) {
        limit.started = Instant::now().checked_sub(took).expect("a past instant");
        limit.end(rows);
    }

    #[test]
    fn pages_grow_while_full_and_quick_and_shrink_when_slow() {
        let mut limit = PageLimit::between(100, 700);
        let quick = Duration::from_millis(1);
        page(&mut limit, 100, quick);
        assert_eq!(limit.rows(), 200);
        page(&mut limit, 200, quick);
        page(&mut limit, 400, quick);
        assert_eq!(limit.rows(), 700, "up to the largest page");
        page(&mut limit, 700, quick);
        assert_eq!(limit.rows(), 700);
        // A short page (the end of the log) or a full one that took a while keeps the size.
        page(&mut limit, 699, quick);
        page(&mut limit, 700, Duration::from_millis(500));
        assert_eq!(limit.rows(), 700);
        // A slow reader halves it, down to the first page's size.
        page(&mut limit, 700, Duration::from_secs(2));
        assert_eq!(limit.rows(), 350);
        page(&mut limit, 10, Duration::from_secs(2));
        page(&mut limit, 10, Duration::from_secs(2));
        assert_eq!(limit.rows(), 100);
    }

    #[test]
    fn a_largest_page_below_the_first_keeps_every_page_at_the_first() {
        let mut limit = PageLimit::between(100, 10);
        page(&mut limit, 100, Duration::from_millis(1));
        assert_eq!(limit.rows(), 100);
    }
}
