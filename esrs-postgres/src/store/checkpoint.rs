//! Checkpoints of projections: where each one is in the global log.
//!
//! A projection that writes its read model in the same database saves its checkpoint in the
//! transaction that writes the model (the `_in` methods), so the two commit together and a
//! restart resumes exactly after the last event applied.

use esrs_core::Position;
use sqlx::postgres::PgConnection;
use sqlx::{Executor, Postgres, Row};

use super::PgStore;
use super::lock::EPOCH_COLUMNS;
use super::read::{signed, unsigned};
use super::sql::pg_type::INT8;
use super::sql::{Column, index};
use crate::error::to_core;

/// The columns of `load_checkpoint.sql`: where the checkpoint is.
pub(crate) const CHECKPOINT_COLUMNS: &[Column] = &[
    Column::new("transaction_id", INT8),
    Column::new("sequence", INT8),
];
const TRANSACTION_ID: usize = index(CHECKPOINT_COLUMNS, "transaction_id");
const SEQUENCE: usize = index(CHECKPOINT_COLUMNS, "sequence");

/// Where a row of `projection_owner.sql` holds the owner's epoch.
const EPOCH: usize = index(EPOCH_COLUMNS, "epoch");

impl PgStore {
    /// The checkpoint of `projection`, if it has one.
    pub async fn load_checkpoint(&self, projection: &str) -> esrs_core::Result<Option<Position>> {
        let mut lease = self.connections().lease().await.map_err(to_core)?;
        self.load_checkpoint_with(&mut lease, projection).await
    }

    /// The checkpoint of `projection` as seen by the caller's transaction.
    pub async fn load_checkpoint_in(
        &self,
        conn: &mut PgConnection,
        projection: &str,
    ) -> esrs_core::Result<Option<Position>> {
        self.load_checkpoint_with(conn, projection).await
    }

    /// Moves the checkpoint of `projection` from `from` to `to` in the caller's
    /// transaction, only if it is at `from` (a projection without a checkpoint is at
    /// [`Position::START`]). Returns whether it moved; `false` means another runner moved
    /// it, and nothing was written.
    ///
    /// This compare-and-set is the only way to write a checkpoint: a checkpoint set or
    /// deleted wherever it is would go behind the back of a running runner. To start a
    /// projection over, run [`ProjectionRunner::rebuild`](esrs_core::ProjectionRunner::rebuild),
    /// which holds the projection's lock.
    ///
    /// ```compile_fail
    /// # async fn demo(store: esrs_postgres::PgStore) {
    /// store.save_checkpoint("p", esrs_core::Position::START).await;
    /// # }
    /// ```
    ///
    /// ```compile_fail
    /// # async fn demo(store: esrs_postgres::PgStore) {
    /// store.delete_checkpoint("p").await;
    /// # }
    /// ```
    pub async fn move_checkpoint_in(
        &self,
        conn: &mut PgConnection,
        projection: &str,
        from: Position,
        to: Position,
    ) -> esrs_core::Result<bool> {
        let done = sqlx::query(&self.sql().move_checkpoint)
            .bind(projection)
            .bind(signed(from.transaction_id))
            .bind(signed(from.sequence))
            .bind(signed(to.transaction_id))
            .bind(signed(to.sequence))
            .execute(conn)
            .await
            .map_err(to_core)?;
        Ok(done.rows_affected() == 1)
    }

    /// Whether the owner epoch `epoch` is still the current one of `projection`, locking
    /// the owner row until the caller's transaction ends so that no runner takes over
    /// before it commits.
    pub(crate) async fn is_projection_owner_in(
        &self,
        conn: &mut PgConnection,
        projection: &str,
        epoch: i64,
    ) -> Result<bool, sqlx::Error> {
        let current = sqlx::query(&self.sql().projection_owner)
            .bind(projection)
            .fetch_optional(conn)
            .await?;
        let current: Option<i64> = current.map(|row| row.try_get(EPOCH)).transpose()?;
        Ok(current == Some(epoch))
    }

    /// The checkpoint of `projection`, read on `executor`.
    async fn load_checkpoint_with<'e, E>(
        &self,
        executor: E,
        projection: &str,
    ) -> esrs_core::Result<Option<Position>>
    where
        E: Executor<'e, Database = Postgres>,
    {
        let row = sqlx::query(&self.sql().load_checkpoint)
            .bind(projection)
            .fetch_optional(executor)
            .await
            .map_err(to_core)?;
        row.map(|row| {
            let transaction: i64 = row.try_get(TRANSACTION_ID)?;
            let sequence: i64 = row.try_get(SEQUENCE)?;
            Ok(Position::new(unsigned(transaction), unsigned(sequence)))
        })
        .transpose()
        .map_err(to_core)
    }
}
