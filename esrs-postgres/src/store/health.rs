//! [`PgStore::sample_health`]: the age of the oldest writing transaction, which holds back
//! readers of the global log, and the pool's connections, as gauges.

use std::time::Duration;

use esrs_core::metrics::{PG_OLDEST_OPEN_TRANSACTION_SECONDS, PG_POOL_CONNECTIONS};
use sqlx::Row;

use super::PgStore;
use crate::error::to_core;

/// The age of the cluster's oldest open transaction that has a transaction id (it has
/// written), from its start; no row's value is NULL when there is none.
const OLDEST_OPEN_TRANSACTION: &str = "\
SELECT EXTRACT(EPOCH FROM clock_timestamp() - min(xact_start))::float8 AS age \
FROM pg_stat_activity \
WHERE backend_xid IS NOT NULL";

/// What [`PgStore::sample_health`] found.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct PgHealth {
    /// How long the oldest open transaction of the cluster that has written has been open,
    /// if there is one. [`read_all`](esrs_core::EventStore::read_all) returns only events of
    /// transactions older than it, so this is how long it may have held back readers of
    /// the global log (projections, the NATS relay).
    pub oldest_open_transaction: Option<Duration>,
    /// Connections of the store's pool in use, including those the store keeps between
    /// its operations (see [`PgStoreOptions::reuse_connections`](crate::PgStoreOptions::reuse_connections)).
    pub connections_in_use: u32,
    /// Idle connections of the store's pool.
    pub connections_idle: u32,
}

impl PgStore {
    /// Samples the store's health and sets its gauges (`esrs_pg_oldest_open_transaction_seconds`,
    /// `esrs_pg_pool_connections{state}`; see [`esrs_core::metrics`]): one query of
    /// `pg_stat_activity`, which a role sees whole only with `pg_read_all_stats` (or as
    /// superuser; other roles' transactions are otherwise hidden from it).
    ///
    /// The store does not sample by itself: call it on a timer, for instance every 10
    /// seconds from a task of the program, where a dashboard wants the numbers.
    ///
    /// ```no_run
    /// # async fn demo(store: esrs_postgres::PgStore) {
    /// tokio::spawn(async move {
    ///     let mut every = tokio::time::interval(std::time::Duration::from_secs(10));
    ///     loop {
    ///         every.tick().await;
    ///         if let Err(error) = store.sample_health().await {
    ///             eprintln!("cannot sample the store's health: {error}");
    ///         }
    ///     }
    /// });
    /// # }
    /// ```
    pub async fn sample_health(&self) -> esrs_core::Result<PgHealth> {
        let pool = self.pool();
        let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX);
        let size = pool.size();
        let health_pool = (size.saturating_sub(idle), idle);
        let mut lease = self.connections().lease().await.map_err(to_core)?;
        let row = sqlx::query(OLDEST_OPEN_TRANSACTION)
            .fetch_one(&mut lease)
            .await
            .map_err(to_core)?;
        drop(lease);
        let age: Option<f64> = row.try_get("age").map_err(to_core)?;
        let oldest_open_transaction = age.map(|secs| Duration::from_secs_f64(secs.max(0.0)));
        let health = PgHealth {
            oldest_open_transaction,
            connections_in_use: health_pool.0,
            connections_idle: health_pool.1,
        };
        metrics::gauge!(PG_OLDEST_OPEN_TRANSACTION_SECONDS)
            .set(oldest_open_transaction.map_or(0.0, |age| age.as_secs_f64()));
        metrics::gauge!(PG_POOL_CONNECTIONS, "state" => "in_use")
            .set(f64::from(health.connections_in_use));
        metrics::gauge!(PG_POOL_CONNECTIONS, "state" => "idle")
            .set(f64::from(health.connections_idle));
        Ok(health)
    }
}
