//! Filtered reads of the global log: the events of some names, of one shard of the streams,
//! or both, filtered in SQL, with the positions the reader got through although it was given
//! no event there ([`LogEntry::Through`]).
//!
//! A read goes one of two ways, page by page, by what it finds:
//!
//! - **A window of the log** while the matched events are frequent: the next `page_size`
//!   rows in commit-safe order, as `read_all` reads them, each with whether the filter
//!   matches it; a skipped row carries its position alone (no payload crosses the wire).
//!   A shard's reads always go this way: which streams are in a shard is a hash, which no
//!   index orders. After a full window whose every row is matched (a projection of every
//!   name of the log), the next pages are `read_all`'s, the names checked in the client,
//!   until one has a row to skip.
//! - **Name by name** while they are rare (fewer than a quarter of a full window's rows):
//!   the next `page_size` events of the names, each name's walked through the index on
//!   (name, transaction id, sequence), so that the rows of other names are not read at all.
//!   Each page is bounded by a horizon taken just before it (the oldest running
//!   transaction: the log below it is final), with the last position of the whole log below
//!   it; a page that comes back short has got through that position, which the read gives
//!   as a [`LogEntry::Through`]. The read goes back to windows when a full page's events
//!   make up more than half of the log it spans.
//!
//! Either way, a short page is followed by the settle check of `read_all` (committed events
//! held back by an older open transaction are waited for, up to the store's settle time).

use esrs_core::Position;
use esrs_core::store::{LogEntry, LogFilter, LogStream};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::decode::{Shared, Xid8, decode_event, signed, unsigned};
use super::log::{LOG_COLUMNS, LOG_EVENT, PageLimit, Settle};
use super::{Page, Pages, paged};
use crate::error::to_core;
use crate::store::PgStore;
use crate::store::sql::pg_type::{BOOL, INT8, XID8};
use crate::store::sql::{Column, concat, index, offset};

/// The columns of `read_log_window.sql`: whether the filter matches the row, then a page
/// row of the global log ([`LOG_COLUMNS`]), whose columns but the position are null in a
/// row that is not matched.
pub(crate) const WINDOW_COLUMNS: &[Column] =
    &concat::<11>(&[&[Column::new("matched", BOOL)], LOG_COLUMNS]);
const WINDOW_MATCHED: usize = index(WINDOW_COLUMNS, "matched");
const WINDOW_LOG: usize = offset(WINDOW_COLUMNS, LOG_COLUMNS);
const WINDOW_SEQUENCE: usize = index(WINDOW_COLUMNS, "sequence");
const WINDOW_TRANSACTION_ID: usize = index(WINDOW_COLUMNS, "transaction_id");
const WINDOW_STREAM_ID: usize = index(WINDOW_COLUMNS, "stream_id");

/// Where a row of `read_log_names.sql` and of `read_all.sql` ([`LOG_COLUMNS`]) holds its
/// stream.
const LOG_STREAM_ID: usize = index(LOG_COLUMNS, "stream_id");

/// The columns of `log_horizon.sql`: the horizon, and the last position of the log below it
/// (null when there is none).
pub(crate) const HORIZON_COLUMNS: &[Column] = &[
    Column::new("horizon", XID8),
    Column::new("transaction_id", XID8),
    Column::new("sequence", INT8),
];
const HORIZON: usize = index(HORIZON_COLUMNS, "horizon");
const HORIZON_TRANSACTION_ID: usize = index(HORIZON_COLUMNS, "transaction_id");
const HORIZON_SEQUENCE: usize = index(HORIZON_COLUMNS, "sequence");

/// How a filtered read reads its next page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    /// Every row, whole, as `read_all` reads it, the names checked in the client: while
    /// every row of the windows is matched.
    All,
    /// A window of the log, every row with whether it is matched.
    Window,
    /// The events of the names, name by name.
    Names,
}

/// A window whose matched rows are fewer than `1 / RARE` of its rows sends the read name by
/// name.
const RARE: u64 = 4;
/// A page read name by name whose events are more than `1 / FREQUENT` of the log it spans
/// sends the read back to windows.
const FREQUENT: u64 = 2;

struct FilteredPages<'a> {
    store: &'a PgStore,
    filter: LogFilter,
    /// The names matched, sorted (`None`: every name).
    names: Option<Vec<String>>,
    /// The shard's count and index (`None`: every stream).
    shard: Option<(i64, i64)>,
    way: Way,
    limit: PageLimit,
    /// The last position the read got through: the last row of a window, the last event
    /// given, or the position of the last `Through`.
    after: Position,
    /// Where the current page started.
    page_start: Position,
    /// Rows of the current page: a window's rows, or the events of a page of names.
    rows: u32,
    /// Matched events of the current page.
    matched: u32,
    /// A window's rows skipped since the last event given: the last one's position.
    skipped: Option<Position>,
    /// The horizon of the next page of names, and the last position of the log below it.
    horizon: Option<(u64, Option<Position>)>,
    /// What the current page of names gets through if it comes back short.
    tail: Option<Position>,
    started: bool,
    /// A settle check found events after the cursor: read the next page.
    retry: bool,
    caught_up: bool,
    settle: Settle,
    shared: Shared,
}

impl FilteredPages<'_> {
    fn shard_count(&self) -> Option<i64> {
        self.shard.map(|(count, _)| count)
    }

    fn shard_index(&self) -> Option<i64> {
        self.shard.map(|(_, index)| index)
    }
}

impl<'a> Pages<'a> for FilteredPages<'a> {
    type Item = LogEntry;

    fn next_page(&mut self) -> Page<'a> {
        let page_size = self.limit.rows();
        if let Some((horizon, tail)) = self.horizon.take() {
            self.tail = tail;
            self.limit.start();
            return Page::Query(
                sqlx::query(&self.store.sql().read_log_names)
                    .bind(Xid8(self.after.transaction_id))
                    .bind(signed(self.after.sequence))
                    .bind(Xid8(horizon))
                    .bind(self.names.clone().unwrap_or_default())
                    .bind(i64::from(page_size))
                    .bind(self.shard_count())
                    .bind(self.shard_index()),
            );
        }
        let short = self.started && self.rows < page_size && !self.retry;
        if self.started {
            self.limit.end(self.rows);
        }
        let page_size = self.limit.rows();
        self.started = true;
        self.retry = false;
        self.rows = 0;
        self.matched = 0;
        self.page_start = self.after;
        if !short {
            if self.way != Way::Names {
                self.limit.start();
            }
            return match self.way {
                Way::All => Page::Query(
                    sqlx::query(&self.store.sql().read_all)
                        .bind(Xid8(self.after.transaction_id))
                        .bind(signed(self.after.sequence))
                        .bind(i64::from(page_size)),
                ),
                Way::Window => Page::Query(
                    sqlx::query(&self.store.sql().read_log_window)
                        .bind(Xid8(self.after.transaction_id))
                        .bind(signed(self.after.sequence))
                        .bind(i64::from(page_size))
                        .bind(self.names.clone())
                        .bind(self.shard_count())
                        .bind(self.shard_index()),
                ),
                Way::Names => Page::Fetch(sqlx::query(&self.store.sql().log_horizon)),
            };
        }
        if self.caught_up {
            return Page::Done;
        }
        self.settle.next(self.store, self.after)
    }

    fn fetched(&mut self, row: &PgRow) -> esrs_core::Result<()> {
        let horizon: Xid8 = row.try_get(HORIZON).map_err(to_core)?;
        let transaction: Option<Xid8> = row.try_get(HORIZON_TRANSACTION_ID).map_err(to_core)?;
        let sequence: Option<i64> = row.try_get(HORIZON_SEQUENCE).map_err(to_core)?;
        let tail = transaction
            .zip(sequence)
            .map(|(transaction, sequence)| Position::new(transaction.0, unsigned(sequence)));
        self.horizon = Some((horizon.0, tail));
        Ok(())
    }

    fn read_on(&mut self, beyond: bool) {
        if beyond {
            self.retry = true;
        } else {
            self.caught_up = true;
        }
    }

    fn decode(&mut self, row: &PgRow) -> esrs_core::Result<Option<LogEntry>> {
        self.rows += 1;
        if self.way == Way::All {
            let stream = self.shared.stream(row, LOG_STREAM_ID)?;
            let event = decode_event(row, LOG_EVENT, stream, &mut self.shared)?;
            self.after = event.position;
            if !self.filter.matches_name(&event.name) {
                self.skipped = Some(self.after);
                return Ok(None);
            }
            self.matched += 1;
            self.skipped = None;
            return Ok(Some(LogEntry::Event(event)));
        }
        if self.way == Way::Names {
            let stream = self.shared.stream(row, LOG_STREAM_ID)?;
            let event = decode_event(row, LOG_EVENT, stream, &mut self.shared)?;
            self.matched += 1;
            self.after = event.position;
            return Ok(Some(LogEntry::Event(event)));
        }
        let matched: bool = row.try_get_unchecked(WINDOW_MATCHED).map_err(to_core)?;
        if matched {
            let stream = self.shared.stream(row, WINDOW_STREAM_ID)?;
            let event = decode_event(row, WINDOW_LOG, stream, &mut self.shared)?;
            self.matched += 1;
            self.after = event.position;
            self.skipped = None;
            return Ok(Some(LogEntry::Event(event)));
        }
        let sequence: i64 = row.try_get_unchecked(WINDOW_SEQUENCE).map_err(to_core)?;
        let transaction: Xid8 = row
            .try_get_unchecked(WINDOW_TRANSACTION_ID)
            .map_err(to_core)?;
        self.after = Position::new(transaction.0, unsigned(sequence));
        self.skipped = Some(self.after);
        Ok(None)
    }

    fn complete(&mut self) -> Option<LogEntry> {
        let page_size = self.limit.rows();
        match self.way {
            Way::All => {
                if self.matched < self.rows {
                    self.way = Way::Window;
                }
                self.skipped.take().map(LogEntry::Through)
            }
            Way::Window => {
                if self.names.is_some()
                    && self.rows == page_size
                    && u64::from(self.matched) * RARE < u64::from(self.rows)
                {
                    self.way = Way::Names;
                } else if self.shard.is_none()
                    && self.rows == page_size
                    && self.matched == self.rows
                {
                    self.way = Way::All;
                }
                self.skipped.take().map(LogEntry::Through)
            }
            Way::Names if self.rows < page_size => {
                // Every event of the names below the horizon has been given: the read got
                // through the log below it.
                let tail = self.tail.take().filter(|tail| *tail > self.after)?;
                self.after = tail;
                Some(LogEntry::Through(tail))
            }
            Way::Names => {
                let span = self.after.sequence.saturating_sub(self.page_start.sequence);
                if u64::from(self.matched) * FREQUENT > span {
                    self.way = Way::Window;
                }
                None
            }
        }
    }
}

/// The entries of the global log after `after` that `filter` matches (not
/// [`LogFilter::is_all`], which `read_all` reads), filtered in SQL.
pub(in crate::store) fn read_log<'a>(
    store: &'a PgStore,
    after: Position,
    filter: &LogFilter,
) -> LogStream<'a> {
    let span = db_span!("esrs.pg.read_log", store, "read_log", "events", after = %after, events = tracing::field::Empty);
    let names = filter.name_list().map(<[String]>::to_vec);
    let shard = filter
        .shard()
        .filter(|shard| shard.count() > 1)
        .map(|shard| (i64::from(shard.count()), i64::from(shard.index())));
    // No name is matched: no window can find one.
    let way = match &names {
        Some(names) if names.is_empty() => Way::Names,
        _ => Way::Window,
    };
    paged(
        store,
        FilteredPages {
            store,
            filter: filter.clone(),
            names,
            shard,
            way,
            limit: PageLimit::new(store),
            after,
            page_start: after,
            rows: 0,
            matched: 0,
            skipped: None,
            horizon: None,
            tail: None,
            started: false,
            retry: false,
            caught_up: false,
            settle: Settle::new(),
            shared: Shared::default(),
        },
        span,
    )
}
