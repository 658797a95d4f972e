//! [`Lease`]: one operation's connection, which watches the statements run on it and, when
//! dropped, parks the connection or returns it to the pool by what it saw.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_core::Stream;
use futures_core::future::BoxFuture;
use futures_core::stream::BoxStream;
use futures_util::StreamExt;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use sqlx::{Connection, Describe, Either, Execute, Executor, Postgres, Transaction};

use super::Connections;

/// One operation's connection, from [`Connections::lease`].
///
/// `&mut Lease` runs statements as a `&mut PgConnection` does, and records how each one
/// ends. Dropped, the lease parks its connection if no statement is in flight and the last
/// one ran to its end or failed with an error the server reported; otherwise the connection
/// goes back to the pool, whose ping recovers or closes it.
pub(crate) struct Lease<'s> {
    owner: &'s Connections,
    /// The connection, until the lease ends or [`detach`](Self::detach) takes it.
    conn: Option<PoolConnection<Postgres>>,
    /// Since when the connection has been out of the pool.
    out_since: Instant,
    state: State,
}

/// Where a lease's connection is in its protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No statement is in flight and the protocol is in step: the connection can be parked.
    Ready,
    /// A statement or a transaction has started and not ended: if the lease ends now, the
    /// operation was dropped midway.
    Busy,
    /// A statement failed in a way that may have left the protocol midway (I/O, protocol,
    /// decoding): the connection goes back to the pool, whatever runs on it next.
    Broken,
}

impl State {
    /// A statement or a transaction starts.
    fn start(&mut self) {
        if *self != State::Broken {
            *self = State::Busy;
        }
    }

    /// The statement or transaction ended, failing with `error` if it is `Some`.
    fn end(&mut self, error: Option<&sqlx::Error>) {
        if *self == State::Busy {
            *self = if error.is_none_or(in_step) {
                State::Ready
            } else {
                State::Broken
            };
        }
    }
}

/// Whether a connection is usable as is after a statement failed with `error`.
fn in_step(error: &sqlx::Error) -> bool {
    // The server answered (and sqlx reads on to the end of the answer before the next
    // statement); anything else may have left the protocol midway.
    matches!(error, sqlx::Error::Database(_) | sqlx::Error::RowNotFound)
}

impl<'s> Lease<'s> {
    /// A lease of `conn`, out of the pool since `out_since`.
    pub(super) fn new(
        owner: &'s Connections,
        conn: PoolConnection<Postgres>,
        out_since: Instant,
    ) -> Self {
        Self {
            owner,
            conn: Some(conn),
            out_since,
            state: State::Ready,
        }
    }

    /// The connection and the state, borrowed apart so that a statement borrows one and
    /// records its end in the other.
    fn parts(&mut self) -> (&mut PgConnection, &mut State) {
        let conn = self
            .conn
            .as_deref_mut()
            .expect("a lease holds its connection until it ends");
        (conn, &mut self.state)
    }

    /// Begins a transaction on the lease's connection. The lease stays busy until the
    /// transaction commits: dropped or failed, it returns the connection to the pool.
    pub(crate) async fn begin(&mut self) -> Result<Tx<'_>, sqlx::Error> {
        let (conn, state) = self.parts();
        state.start();
        match conn.begin().await {
            Ok(tx) => Ok(Tx { tx, state }),
            Err(error) => {
                state.end(Some(&error));
                Err(error)
            }
        }
    }

    /// Ends the lease by taking its connection out of the pool for good (the pool may open
    /// another in its place): for a session-level state, such as an advisory lock, that
    /// must outlive the operation on a connection of its own.
    pub(crate) fn detach(mut self) -> PgConnection {
        self.conn
            .take()
            .expect("a lease holds its connection until it ends")
            .detach()
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            if self.state == State::Ready {
                self.owner.park(conn, self.out_since);
            }
            // Otherwise `conn` is dropped here: back to the pool, which pings it.
        }
    }
}

impl std::fmt::Debug for Lease<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("state", &self.state)
            .field("out_since", &self.out_since)
            .finish_non_exhaustive()
    }
}

impl<'c> Executor<'c> for &'c mut Lease<'_> {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let (conn, state) = self.parts();
        state.start();
        Box::pin(Tracked {
            items: conn.fetch_many(query),
            state,
        })
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let (conn, state) = self.parts();
        state.start();
        let row = conn.fetch_optional(query);
        Box::pin(async move {
            let row = row.await;
            state.end(row.as_ref().err());
            row
        })
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement<'q>, sqlx::Error>>
    where
        'c: 'e,
    {
        let (conn, state) = self.parts();
        state.start();
        let statement = conn.prepare_with(sql, parameters);
        Box::pin(async move {
            let statement = statement.await;
            state.end(statement.as_ref().err());
            statement
        })
    }

    fn describe<'e, 'q: 'e>(
        self,
        sql: &'q str,
    ) -> BoxFuture<'e, Result<Describe<Postgres>, sqlx::Error>>
    where
        'c: 'e,
    {
        let (conn, state) = self.parts();
        state.start();
        let described = conn.describe(sql);
        Box::pin(async move {
            let described = described.await;
            state.end(described.as_ref().err());
            described
        })
    }
}

/// A statement's results, recording in the lease's state whether they ran to their end
/// (the stream ended, or failed with an error the server reported) or not.
struct Tracked<'e, S> {
    items: S,
    state: &'e mut State,
}

impl<T, S> Stream for Tracked<'_, S>
where
    S: Stream<Item = Result<T, sqlx::Error>> + Unpin,
{
    type Item = Result<T, sqlx::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let next = this.items.poll_next_unpin(cx);
        match &next {
            Poll::Ready(None) => this.state.end(None),
            Poll::Ready(Some(Err(error))) => this.state.end(Some(error)),
            Poll::Ready(Some(Ok(_))) | Poll::Pending => {}
        }
        next
    }
}

/// A transaction on a lease's connection, from [`Lease::begin`]. Statements run on it
/// through `&mut *tx` (a `&mut PgConnection`); the lease can park the connection only
/// after [`commit`](Self::commit).
pub(crate) struct Tx<'l> {
    tx: Transaction<'l, Postgres>,
    state: &'l mut State,
}

impl Tx<'_> {
    /// Commits the transaction, and ends it for the lease.
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        let Self { tx, state } = self;
        let done = tx.commit().await;
        state.end(done.as_ref().err());
        done
    }
}

impl std::ops::Deref for Tx<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for Tx<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.tx
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::connections;

    /// Only an operation that completed, or that the server answered with an error, parks
    /// its connection; a lease dropped midway or after an I/O failure hands it back to the
    /// pool.
    #[tokio::test]
    async fn only_completed_operations_park_their_connection() {
        let conns = connections(4).await;

        let mut lease = conns.lease().await.expect("lease");
        let one: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&mut lease)
            .await
            .expect("select");
        assert_eq!(one, 1);
        drop(lease);
        assert_eq!(conns.parked(), 1, "a completed operation parks");

        let mut lease = conns.lease().await.expect("lease");
        assert_eq!(conns.parked(), 0, "the parked connection is reused");
        let failed: Result<i32, _> = sqlx::query_scalar("SELECT 1 / 0")
            .fetch_one(&mut lease)
            .await;
        assert!(matches!(failed, Err(sqlx::Error::Database(_))));
        drop(lease);
        assert_eq!(conns.parked(), 1, "an error the server reported parks");

        let mut lease = conns.lease().await.expect("lease");
        let mut rows = sqlx::query("SELECT generate_series(1, 1000)").fetch(&mut lease);
        futures_util::StreamExt::next(&mut rows).await;
        drop(rows);
        drop(lease);
        assert_eq!(conns.parked(), 0, "a lease dropped midway does not park");

        let mut lease = conns.lease().await.expect("lease");
        let mut rows = sqlx::query("SELECT generate_series(1, 1000)").fetch(&mut lease);
        while futures_util::StreamExt::next(&mut rows).await.is_some() {}
        drop(rows);
        drop(lease);
        assert_eq!(conns.parked(), 1, "a stream read to its end parks");

        // The server ends the session: its answer is an error it reports, after which the
        // connection is closed, and the next statement fails on I/O.
        let mut lease = conns.lease().await.expect("lease");
        let terminated = sqlx::query("SELECT pg_terminate_backend(pg_backend_pid())")
            .execute(&mut lease)
            .await;
        assert!(terminated.is_err(), "{terminated:?}");
        let broken = sqlx::query("SELECT 1").execute(&mut lease).await;
        assert!(
            broken
                .as_ref()
                .is_err_and(|error| !matches!(error, sqlx::Error::Database(_))),
            "{broken:?}"
        );
        drop(lease);
        assert_eq!(conns.parked(), 0, "an I/O failure does not park");
    }
}
