//! Reads: a stream, a snapshot and its tail, the global log. A stream read is one query; the
//! global log is read in pages with keyset pagination, one query per page. Rows are decoded
//! as they arrive (sqlx streams them), so a read holds one row at a time in memory, however
//! long its result.

mod decode;
mod filtered;
mod log;
mod stream;

#[cfg(test)]
pub(crate) use decode::{EVENT_COLUMNS, FOLD_EVENT_COLUMNS};
pub(crate) use decode::{Xid8, fingerprint, payload, signed, unsigned};
pub(super) use filtered::read_log;
#[cfg(test)]
pub(crate) use filtered::{HORIZON_COLUMNS, WINDOW_COLUMNS};
pub(super) use log::read_all;
#[cfg(test)]
pub(crate) use log::{
    EVENTS_AFTER_COLUMNS, EVENTS_BEYOND_COLUMNS, HEAD_POSITION_COLUMNS, LOG_COLUMNS,
};
#[cfg(test)]
pub(crate) use stream::{FOLD_WITH_SNAPSHOT_COLUMNS, STREAM_VERSION_COLUMNS};
pub(super) use stream::{read_for_fold, read_stream, stream_version};

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use futures_util::StreamExt;
use sqlx::Postgres;
use sqlx::postgres::{PgArguments, PgRow};

use super::PgStore;
use crate::error::to_core;

type PgQuery<'a> = sqlx::query::Query<'a, Postgres, PgArguments>;

/// What a read does next.
enum Page<'a> {
    /// Runs the query and decodes its rows.
    Query(PgQuery<'a>),
    /// Asks `check` whether committed events lie beyond the read's cursor, and whether an
    /// older open transaction holds some of them back; [`Pages::read_on`] hears whether
    /// to read on (after a pause of `pause` if events are held back).
    Settle { check: PgQuery<'a>, pause: Duration },
    /// Runs a query of one row and hands the row to [`Pages::fetched`] (what the next page
    /// query needs to know first), then asks for the next page.
    Fetch(PgQuery<'a>),
    /// The read is complete.
    Done,
}

/// A read that runs as one query or a series of page queries.
trait Pages<'a>: Send + 'a {
    type Item: Send + 'a;
    /// What to do next.
    fn next_page(&mut self) -> Page<'a>;
    /// Decodes one row and moves the cursor past it: the item the row holds, if it holds
    /// one.
    fn decode(&mut self, row: &PgRow) -> esrs_core::Result<Option<Self::Item>>;
    /// The row of a [`Page::Fetch`].
    fn fetched(&mut self, _row: &PgRow) -> esrs_core::Result<()> {
        Ok(())
    }
    /// The answer of a [`Page::Settle`] check: whether committed events lie beyond the
    /// cursor (the read goes on), or not (the read is complete).
    fn read_on(&mut self, _beyond: bool) {}
    /// A query returned all its rows; the item that says so, if any.
    fn complete(&mut self) -> Option<Self::Item> {
        None
    }
}

type Items<'a, T> = Pin<Box<dyn Stream<Item = esrs_core::Result<T>> + Send + 'a>>;

/// Streams the items of `pages`, one query at a time, each on a connection leased for it
/// (parked again when the query has returned all its rows, or failed with an error the
/// server reported).
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
                    let mut lease = match store.connections().lease().await {
                        Ok(lease) => lease,
                        Err(error) => {
                            yield Err(to_core(error));
                            break;
                        }
                    };
                    let mut rows = query.fetch(&mut lease);
                    let failed = loop {
                        match rows.next().await {
                            Some(Ok(row)) => match pages.decode(&row) {
                                Ok(Some(item)) => yield Ok(item),
                                Ok(None) => {}
                                // The rest of the answer is unread: the lease returns the
                                // connection to the pool, which recovers it.
                                Err(error) => break Some(error),
                            },
                            Some(Err(error)) => break Some(to_core(error)),
                            None => break None,
                        }
                    };
                    // The connection is parked or returned before the error is yielded: a
                    // reader may drop the stream when it sees the error.
                    drop(rows);
                    drop(lease);
                    match failed {
                        None => {
                            if let Some(item) = pages.complete() {
                                yield Ok(item);
                            }
                        }
                        Some(error) => {
                            yield Err(error);
                            break;
                        }
                    }
                }
                Page::Fetch(query) => {
                    let row = match store.connections().lease().await {
                        Ok(mut lease) => query.fetch_one(&mut lease).await.map_err(to_core),
                        Err(error) => Err(to_core(error)),
                    };
                    if let Err(error) = row.and_then(|row| pages.fetched(&row)) {
                        yield Err(error);
                        break;
                    }
                }
                Page::Settle { check, pause } => {
                    let beyond = match store.connections().lease().await {
                        Ok(mut lease) => check
                            .fetch_one(&mut lease)
                            .await
                            .and_then(|row| log::settle_check(&row)),
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
        count: 0,
    })
}

/// A read's items, counted, in the read's one span (entered while the read is polled, only
/// when it is enabled). The span lasts as long as the read: its duration is the read's.
struct Read<S> {
    items: S,
    done: bool,
    span: tracing::Span,
    count: u64,
}

impl<T, S: Stream<Item = esrs_core::Result<T>> + Unpin> Stream for Read<S> {
    type Item = esrs_core::Result<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let next = {
            let _entered = (!this.span.is_disabled()).then(|| this.span.enter());
            this.items.poll_next_unpin(cx)
        };
        match &next {
            Poll::Ready(Some(Ok(_))) => this.count += 1,
            Poll::Ready(Some(Err(_))) | Poll::Ready(None) => {
                this.done = true;
                this.span.record("events", this.count);
                // The read is over: its span closes now, not when the stream is dropped.
                this.span = tracing::Span::none();
            }
            Poll::Pending => {}
        }
        next
    }
}
