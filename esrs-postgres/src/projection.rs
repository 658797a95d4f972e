//! Projections over PostgreSQL: checkpoints in the store's schema, read models written in
//! the checkpoint's transaction, at most one runner of a projection across processes, and
//! inline projections written in the append's transaction.
//!
//! See [`PgCheckpoints`].

use esrs_core::projection::CheckpointError;
use esrs_core::projection::{CheckpointStore, ProjectionError, ProjectionEvents};
use esrs_core::store::{AppendOutcome, AppendRequest};
use esrs_core::{Position, Projection};
use sqlx::Postgres;

use crate::error::to_core;
use crate::{PgStore, ProjectionLock};

/// The transaction a [`PgCheckpoints`] projection handler writes in; the checkpoint is
/// saved and committed in it.
pub type PgTransaction = sqlx::Transaction<'static, Postgres>;

/// Projection checkpoints in the `checkpoints` table of a [`PgStore`]'s schema, saved in
/// the transaction handed to the projection's handlers.
///
/// [`PgCheckpoints`] is the [`CheckpointStore`] of a [`PgStore`]. Its unit of work is a
/// [`PgTransaction`]: a projection implementing `Projection<PgTransaction>` writes its read
/// model through the transaction it is handed, and the runner saves the checkpoint and
/// commits in that same transaction, so each event's effect happens exactly once, even
/// across crashes. A projection that writes elsewhere (a cache, a search index, another
/// database) runs with the same checkpoints and gets at-least-once delivery; it makes its
/// handler idempotent with the event's position.
///
/// A runner holds a PostgreSQL advisory lock on a dedicated connection while it runs, so a
/// second runner of the same projection, in any process, gets
/// [`ProjectionError::AlreadyRunning`](esrs_core::projection::ProjectionError::AlreadyRunning) or
/// waits ([`ProjectionRunner::wait_for_lock`](esrs_core::ProjectionRunner::wait_for_lock)).
/// Should that connection drop without the runner knowing, and another runner take the
/// lock, the runner that lost it fails with [`CheckpointError::LockLost`] at its next save,
/// and the new holder goes on: each taking of the lock makes a new owner of the
/// projection, and a save commits only under the current owner. The checkpoint is
/// compare-and-set besides.
///
/// ```no_run
/// use esrs_core::{BoxError, Projection, ProjectionRunner, RecordedEvent};
/// use esrs_postgres::{PgCheckpoints, PgStore, PgTransaction};
///
/// /// Counts events per stream in a table.
/// #[derive(Debug)]
/// struct EventCounts;
///
/// impl Projection<PgTransaction> for EventCounts {
///     type Event = serde_json::Value;
///     fn name(&self) -> &str { "event_counts" }
///     async fn handle(&mut self, tx: &mut PgTransaction, _event: serde_json::Value, envelope: &RecordedEvent) -> Result<(), BoxError> {
///         sqlx::query(
///             "INSERT INTO event_counts (stream, events) VALUES ($1, 1)
///              ON CONFLICT (stream) DO UPDATE SET events = event_counts.events + 1",
///         )
///         .bind(envelope.stream.as_str())
///         .execute(&mut **tx)
///         .await?;
///         Ok(())
///     }
///     async fn reset(&mut self, tx: &mut PgTransaction) -> Result<(), BoxError> {
///         sqlx::query("DELETE FROM event_counts").execute(&mut **tx).await?;
///         Ok(())
///     }
/// }
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let store = PgStore::connect("postgres://postgres@localhost/app").await?;
/// store.migrate().await?;
/// let running = ProjectionRunner::new(store.clone(), PgCheckpoints::new(&store), EventCounts).spawn();
/// // …
/// running.stop().await?;
/// # Ok(()) }
/// ```
///
/// A runner uses two connections of the store's pool at once (a page of the log being read
/// and the transaction of the batch being handled), and its lock one outside the pool: a
/// pool allowing fewer is refused when the runner starts
/// ([`PgCheckpointError::PoolTooSmall`]).
///
/// Cloning is cheap: clones share the store's pool.
#[derive(Debug, Clone)]
pub struct PgCheckpoints {
    store: PgStore,
}

impl PgCheckpoints {
    /// The checkpoints of `store`, in its schema and through its pool.
    pub fn new(store: &PgStore) -> Self {
        Self {
            store: store.clone(),
        }
    }

    /// The store the checkpoints belong to.
    pub fn store(&self) -> &PgStore {
        &self.store
    }
}

/// The connections a runner of a [`PgCheckpoints`] projection uses at once from the store's
/// pool: one for the page of the log it is reading, one for the transaction of the batch
/// it is handling. Its lock is held on a connection of its own, outside the pool.
const RUNNER_CONNECTIONS: u32 = 2;

/// Why [`PgCheckpoints`] refuses to run a projection. It comes back as
/// [`CheckpointError::Backend`], whose source downcasts to it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgCheckpointError {
    /// The store's pool allows fewer connections than a runner uses at once (two): the runner would wait for itself until the pool's acquire
    /// timeout. Refused when the runner starts, before it takes its lock.
    #[error(
        "a projection runner uses {needed} connections of the store's pool at once (a page of the log and the batch's transaction), but the pool allows {max_connections}"
    )]
    PoolTooSmall {
        /// The pool's `max_connections`.
        max_connections: u32,
        /// What a runner uses at once.
        needed: u32,
    },
}

fn store_error(error: impl std::error::Error + Send + Sync + 'static) -> CheckpointError {
    CheckpointError::Backend(Box::new(error))
}

impl CheckpointStore for PgCheckpoints {
    type Tx = PgTransaction;
    type Lock = ProjectionLock;

    async fn load(&self, projection: &str) -> Result<Position, CheckpointError> {
        Ok(self
            .store
            .load_checkpoint(projection)
            .await
            .map_err(store_error)?
            .unwrap_or(Position::START))
    }

    async fn begin(&self) -> Result<PgTransaction, CheckpointError> {
        self.store.connections().begin().await.map_err(store_error)
    }

    async fn save(
        &self,
        tx: &mut PgTransaction,
        lock: &ProjectionLock,
        projection: &str,
        from: Position,
        to: Position,
    ) -> Result<(), CheckpointError> {
        // Fenced first: the owner row stays locked until the transaction ends, so the
        // runner is still the owner when it commits.
        let owner = self
            .store
            .is_projection_owner_in(tx, projection, lock.epoch())
            .await
            .map_err(store_error)?;
        if !owner {
            return Err(CheckpointError::LockLost {
                projection: projection.to_owned(),
            });
        }
        let moved = self
            .store
            .move_checkpoint_in(tx, projection, from, to)
            .await
            .map_err(store_error)?;
        if moved {
            return Ok(());
        }
        let actual = self
            .store
            .load_checkpoint_in(tx, projection)
            .await
            .map_err(store_error)?;
        Err(CheckpointError::Moved {
            expected: from,
            actual,
        })
    }

    async fn commit(&self, tx: PgTransaction) -> Result<(), CheckpointError> {
        tx.commit().await.map_err(store_error)
    }

    async fn rollback(&self, tx: PgTransaction) {
        end_transaction(tx).await;
    }

    async fn try_lock(&self, projection: &str) -> Result<Option<ProjectionLock>, CheckpointError> {
        let max_connections = self.store.pool().options().get_max_connections();
        if max_connections < RUNNER_CONNECTIONS {
            return Err(store_error(PgCheckpointError::PoolTooSmall {
                max_connections,
                needed: RUNNER_CONNECTIONS,
            }));
        }
        self.store
            .try_lock_projection(projection)
            .await
            .map_err(store_error)
    }

    async fn unlock(&self, lock: ProjectionLock) -> Result<(), CheckpointError> {
        lock.release().await.map_err(store_error)
    }
}

impl PgStore {
    /// Appends `request` and applies its events to an inline projection, in one
    /// transaction: the read model changes exactly when the events are committed, and a
    /// reader of it never sees the log ahead of or behind it.
    ///
    /// If the projection's handler fails, or an event it handles does not decode, nothing
    /// is appended and the error is returned. A repeated idempotency key returns the
    /// original outcome and applies nothing again. Conflicts come back as
    /// [`ProjectionError::EventStore`] with [`esrs_core::Error::Conflict`].
    ///
    /// An inline projection keeps no checkpoint: it must not also be run by a
    /// [`ProjectionRunner`](esrs_core::ProjectionRunner) while appends go on, or events
    /// would be applied twice. To rebuild it, stop the writers, run
    /// [`ProjectionRunner::rebuild`](esrs_core::ProjectionRunner::rebuild) once, and go on
    /// appending with this method.
    pub async fn append_inline<P>(
        &self,
        request: AppendRequest,
        projection: &mut P,
    ) -> Result<AppendOutcome, ProjectionError>
    where
        P: Projection<PgTransaction>,
    {
        let name = projection.name().to_owned();
        let store_error = |source: sqlx::Error| ProjectionError::EventStore {
            projection: name.clone(),
            source: to_core(source),
        };
        let mut tx = self.connections().begin().await.map_err(store_error)?;
        match self
            .append_and_apply(&mut tx, request, projection, &name)
            .await
        {
            Ok(outcome) if !outcome.deduplicated => {
                tx.commit().await.map_err(store_error)?;
                Ok(outcome)
            }
            // A repeated key (the original append applied its events and this transaction
            // wrote nothing) or a refusal: rolled back here rather than when the connection
            // goes back to the pool, so that the refused append's locks (its versions, its
            // idempotency key, the rows the handlers wrote) are released before the caller
            // sees the outcome.
            other => {
                end_transaction(tx).await;
                other
            }
        }
    }

    /// The body of [`append_inline`](Self::append_inline), in its transaction.
    async fn append_and_apply<P>(
        &self,
        tx: &mut PgTransaction,
        request: AppendRequest,
        projection: &mut P,
        name: &str,
    ) -> Result<AppendOutcome, ProjectionError>
    where
        P: Projection<PgTransaction>,
    {
        let store_error = |source: sqlx::Error| ProjectionError::EventStore {
            projection: name.to_owned(),
            source: to_core(source),
        };
        let stream = request.stream.clone();
        let outcome =
            self.append_in(tx, request)
                .await
                .map_err(|source| ProjectionError::EventStore {
                    projection: name.to_owned(),
                    source,
                })?;
        if outcome.deduplicated {
            return Ok(outcome);
        }
        let written = self
            .events_in(tx, &stream, outcome.first_version, outcome.last_version)
            .await
            .map_err(store_error)?;
        for record in written {
            if !projection.handles(&record.name) {
                continue;
            }
            let event = <P::Event as ProjectionEvents>::decode(&record)
                .map_err(|source| ProjectionError::decode(name, &record, source))?;
            esrs_core::projection::reacting_to(&record, projection.handle(tx, event, &record))
                .await
                .map_err(|source| ProjectionError::handler(name, &record, source))?;
        }
        Ok(outcome)
    }
}

/// Rolls `tx` back now, rather than when its connection goes back to the pool, so that
/// its locks are released before the caller goes on. A rollback that fails leaves the
/// connection to the pool, which closes it (the server ends the transaction with the
/// session).
async fn end_transaction(tx: PgTransaction) {
    if let Err(error) = tx.rollback().await {
        tracing::debug!(error = %error, "rolling back a transaction failed");
    }
}

/// A read model a [`Repository`](esrs_core::Repository) over a [`PgStore`] updates in the
/// transaction of every command's append: the read model and the events commit together,
/// and deciding, retries on conflicts, idempotency keys and snapshots work as for any
/// command.
///
/// Give it with [`Repository::with_appender`](esrs_core::Repository::with_appender). Each
/// append runs [`PgStore::append_inline`] with a clone of the projection (an inline
/// projection that writes only through the transaction it is handed keeps no state of its
/// own, so clones are cheap and appends of different streams run in parallel). A handler
/// that fails, or an event it handles that does not decode, appends nothing: the command
/// fails with [`esrs_core::Error::InlineReadModel`]. A conflict rolls the read model's
/// writes back with the events, and the retry applies the events it appends.
///
/// ```no_run
/// # use esrs_core::prelude::*;
/// # use esrs_core::{BoxError, Projection, RecordedEvent};
/// # use esrs_postgres::{InlineReadModel, PgStore, PgTransaction};
/// # #[derive(Event, Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
/// # struct ItemAdded { item: String }
/// # #[derive(Debug, Default)]
/// # struct Cart;
/// # #[aggregate(name = "cart")]
/// # impl Cart { #[apply] fn added(&mut self, _: &ItemAdded) {} }
/// /// Items per cart, in a table of its own.
/// #[derive(Clone)]
/// struct ItemCounts;
///
/// impl Projection<PgTransaction> for ItemCounts {
///     type Event = CartEvent;
///     fn name(&self) -> &str {
///         "item_counts"
///     }
///     async fn handle(&mut self, tx: &mut PgTransaction, _: CartEvent, e: &RecordedEvent) -> Result<(), BoxError> {
///         sqlx::query("INSERT INTO item_counts VALUES ($1, 1)
///                      ON CONFLICT (cart) DO UPDATE SET items = item_counts.items + 1")
///             .bind(e.stream.as_str())
///             .execute(&mut **tx)
///             .await?;
///         Ok(())
///     }
/// }
///
/// # async fn demo(store: PgStore) -> Result<(), Box<dyn std::error::Error>> {
/// let carts = Repository::<Cart, _>::new(store).with_appender(InlineReadModel::new(ItemCounts));
/// let id = StreamId::new("42")?;
/// // The item and its count commit together.
/// carts.execute(&id, |_| Ok::<_, std::convert::Infallible>(ItemAdded { item: "book".into() })).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct InlineReadModel<P> {
    projection: P,
}

impl<P> InlineReadModel<P> {
    /// An inline read model maintained by `projection`.
    pub fn new(projection: P) -> Self {
        Self { projection }
    }

    /// The projection.
    pub fn projection(&self) -> &P {
        &self.projection
    }
}

impl<P> esrs_core::repository::Appender<PgStore> for InlineReadModel<P>
where
    P: Projection<PgTransaction> + Clone + Sync,
{
    fn append<'a>(
        &'a self,
        store: &'a PgStore,
        request: AppendRequest,
    ) -> esrs_core::repository::BoxFuture<'a, esrs_core::Result<AppendOutcome>> {
        Box::pin(async move {
            let mut projection = self.projection.clone();
            store
                .append_inline(request, &mut projection)
                .await
                .map_err(|error| match error {
                    ProjectionError::EventStore { source, .. } => source,
                    other => esrs_core::Error::InlineReadModel {
                        projection: self.projection.name().to_owned(),
                        source: Box::new(other),
                    },
                })
        })
    }
}
