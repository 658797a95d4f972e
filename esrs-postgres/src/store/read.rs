//! Reads: a stream, a snapshot and its tail, the global log. A stream read is one query; the
//! global log is read in pages with keyset pagination, one query per page. Rows are decoded
//! as they arrive (sqlx streams them), so a read holds one row at a time in memory, however
//! long its result.

mod decode;
mod log;
mod stream;

pub(crate) use decode::{Xid8, fingerprint, payload, signed, unsigned};

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_core::Stream;
use futures_util::StreamExt;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::{Postgres, Row};

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
