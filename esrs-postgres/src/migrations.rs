//! The store's schema, embedded in the crate and applied by [`PgStore::migrate`].
//!
//! esrs keeps its tables in its own schema and records the migrations it applied in its own
//! table there (`<schema>.migrations`), so they never collide with an application's own
//! migration tool.

use sqlx::Executor;

use crate::error::{Error, Result};
use crate::store::PgStore;

/// One step of the schema, applied once.
struct Migration {
    version: i32,
    description: &'static str,
    sql: &'static str,
}

/// Every migration, in order. Released migrations are never edited: a change is a new one.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "events, snapshots, idempotency keys, checkpoints and the append function",
        sql: include_str!("migrations/0001_initial.sql"),
    },
    Migration {
        version: 2,
        description: "request digests and retention of idempotency keys",
        sql: include_str!("migrations/0002_idempotency_digest_retention.sql"),
    },
    Migration {
        version: 3,
        description: "one snapshot per stream and key (snapshot version, fingerprint)",
        sql: include_str!("migrations/0003_snapshots_per_key.sql"),
    },
    Migration {
        version: 4,
        description: "projection owners, fencing the checkpoint saves of a runner that lost its lock",
        sql: include_str!("migrations/0004_projection_owners.sql"),
    },
    Migration {
        version: 5,
        description: "checkpoints name their transaction id like the events table does",
        sql: include_str!("migrations/0005_checkpoint_transaction_id.sql"),
    },
    Migration {
        version: 6,
        description: "personal data: wrapped keys per subject, forgotten subjects, their streams, the master key check",
        sql: include_str!("migrations/0006_personal_data.sql"),
    },
    Migration {
        version: 7,
        description: "event ids: a unique, stable id for every event",
        sql: include_str!("migrations/0007_event_ids.sql"),
    },
    Migration {
        version: 8,
        description: "event names in global order: filtered reads of the log walk the index name by name",
        sql: include_str!("migrations/0008_event_names.sql"),
    },
];

/// The newest schema version this code applies.
pub(crate) const LATEST_VERSION: i32 = 8;

/// Migration 1 for an events table of `partitions` hash partitions of `stream_id` (1: the
/// migration as released). The global order's index cannot be unique on a partitioned table
/// (a unique index must hold the partition key); `sequence`, an identity, is unique anyway.
/// The append-only triggers are created on every partition too, so that a change made to a
/// partition directly is refused as one made through the table.
fn partitioned(sql: &str, partitions: u16) -> Result<String> {
    if partitions <= 1 {
        return Ok(sql.to_owned());
    }
    const TABLE_END: &str = "    CONSTRAINT events_version_positive CHECK (version >= 1)\n);\n";
    const ORDER_INDEX: &str = "CREATE UNIQUE INDEX events_global_order ON";
    const TRUNCATE_TRIGGER: &str = "CREATE TRIGGER events_no_truncate\n    BEFORE TRUNCATE ON {schema}.events\n    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.refuse_event_changes();\n";
    if !(sql.contains(TABLE_END) && sql.contains(ORDER_INDEX) && sql.contains(TRUNCATE_TRIGGER)) {
        return Err(Error::UnexpectedAnswer(
            "migration 1 is not the one partitioning was written for".to_owned(),
        ));
    }
    let mut tables = String::new();
    let mut triggers = String::new();
    for i in 0..partitions {
        tables.push_str(&format!(
            "CREATE TABLE {{schema}}.events_p{i} PARTITION OF {{schema}}.events\n    \
             FOR VALUES WITH (MODULUS {partitions}, REMAINDER {i});\n"
        ));
        triggers.push_str(&format!(
            "CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON {{schema}}.events_p{i}\n    \
             FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.refuse_event_changes();\n\
             CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON {{schema}}.events_p{i}\n    \
             FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.refuse_event_changes();\n"
        ));
    }
    Ok(sql
        .replacen(
            TABLE_END,
            &format!(
                "    CONSTRAINT events_version_positive CHECK (version >= 1)\n) PARTITION BY HASH (stream_id);\n{tables}"
            ),
            1,
        )
        .replacen(ORDER_INDEX, "CREATE INDEX events_global_order ON", 1)
        .replacen(TRUNCATE_TRIGGER, &format!("{TRUNCATE_TRIGGER}{triggers}"), 1))
}

impl PgStore {
    /// The schema version this code migrates to: what [`schema_version`](Self::schema_version)
    /// returns after [`migrate`](Self::migrate).
    pub const SCHEMA_VERSION: i32 = LATEST_VERSION;

    /// Creates or upgrades the store's schema: one call, safe to repeat and to run from
    /// several processes at once.
    ///
    /// The migrations run in one transaction under an advisory lock tied to the schema
    /// name, so concurrent callers apply each step exactly once and a failed step leaves
    /// nothing behind. The versions applied are recorded in `<schema>.migrations`.
    ///
    /// A schema copied from another cluster (by `pg_dump`/`pg_restore` or a file copy)
    /// whose stored transaction ids lie ahead of this cluster's is refused with
    /// [`Error::RestoredFromAnotherCluster`]: every event appended to it would sort before
    /// the restored ones in the global log. Restore with
    /// [`PgStore::import`](crate::PgStore::import) instead (see [`backup`](crate::backup)).
    pub async fn migrate(&self) -> Result<()> {
        let schema = self.schema();
        // The name is written into SQL unquoted: a keyword such as `user` or `order` would
        // pass the character check and break every statement.
        let mut lease = self.connections().lease().await.map_err(Error::from_sqlx)?;
        let plain: bool = sqlx::query_scalar("SELECT quote_ident($1) = $1")
            .bind(schema)
            .fetch_one(&mut lease)
            .await
            .map_err(Error::from_sqlx)?;
        if !plain {
            return Err(Error::InvalidSchema {
                name: schema.to_owned(),
                reason: "it is an SQL keyword; choose another name",
            });
        }
        let mut tx = lease.begin().await.map_err(Error::from_sqlx)?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('esrs migrate ' || $1, 0))")
            .bind(schema)
            .execute(&mut *tx)
            .await
            .map_err(Error::from_sqlx)?;
        // Multi-statement SQL goes through `Executor::execute` on the connection rather than
        // `raw_sql(..).execute(..)`, whose future is not `Send` (its executor bound is
        // higher-ranked, which the compiler cannot prove for a reborrowed connection).
        let bookkeeping = format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};
             CREATE TABLE IF NOT EXISTS {schema}.migrations (
                 version integer PRIMARY KEY,
                 description text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             );"
        );
        tx.execute(bookkeeping.as_str())
            .await
            .map_err(Error::from_sqlx)?;
        let applied: Vec<i32> =
            sqlx::query_scalar(&format!("SELECT version FROM {schema}.migrations"))
                .fetch_all(&mut *tx)
                .await
                .map_err(Error::from_sqlx)?;
        if let Some(newer) = applied
            .iter()
            .copied()
            .filter(|v| *v > LATEST_VERSION)
            .max()
        {
            tracing::warn!(
                schema,
                database_version = newer,
                code_version = LATEST_VERSION,
                "the esrs schema is newer than this program; leaving it as it is"
            );
        }
        for migration in MIGRATIONS {
            if applied.contains(&migration.version) {
                continue;
            }
            let sql = match migration.version {
                1 => partitioned(migration.sql, self.partitions())?,
                _ => migration.sql.to_owned(),
            }
            .replace("{schema}", schema);
            tx.execute(sql.as_str())
                .await
                .map_err(|source| Error::Migration {
                    version: migration.version,
                    source,
                })?;
            sqlx::query(&format!(
                "INSERT INTO {schema}.migrations (version, description) VALUES ($1, $2)"
            ))
            .bind(migration.version)
            .bind(migration.description)
            .execute(&mut *tx)
            .await
            .map_err(Error::from_sqlx)?;
            tracing::info!(
                schema,
                version = migration.version,
                "applied esrs migration"
            );
        }
        let found: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhparent
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname = 'events'",
        )
        .bind(schema)
        .fetch_one(&mut *tx)
        .await
        .map_err(Error::from_sqlx)?;
        let found = u16::try_from(found.max(1)).unwrap_or(u16::MAX);
        if found != self.partitions() {
            return Err(Error::PartitionLayout {
                schema: schema.to_owned(),
                asked: self.partitions(),
                found: Some(found),
            });
        }
        // A schema restored from another cluster holds transaction ids ahead of this
        // cluster's counter: new events would sort before the restored ones.
        let (stored, next): (Option<i64>, i64) = sqlx::query_as(&format!(
            "SELECT greatest(
                        (SELECT max(transaction_id)::text::bigint FROM {schema}.events),
                        (SELECT max(transaction_id) FROM {schema}.checkpoints)),
                    pg_snapshot_xmax(pg_current_snapshot())::text::bigint"
        ))
        .fetch_one(&mut *tx)
        .await
        .map_err(Error::from_sqlx)?;
        if let Some(stored) = stored.filter(|stored| *stored >= next) {
            return Err(Error::RestoredFromAnotherCluster {
                schema: schema.to_owned(),
                stored: stored.unsigned_abs(),
                next: next.unsigned_abs(),
            });
        }
        tx.commit().await.map_err(Error::from_sqlx)?;
        Ok(())
    }

    /// The schema version applied in the database: 0 before [`PgStore::migrate`] ran.
    pub async fn schema_version(&self) -> Result<i32> {
        let schema = self.schema();
        let mut lease = self.connections().lease().await.map_err(Error::from_sqlx)?;
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = $1 AND tablename = 'migrations')",
        )
        .bind(schema)
        .fetch_one(&mut lease)
        .await
        .map_err(Error::from_sqlx)?;
        if !exists {
            return Ok(0);
        }
        let version: Option<i32> =
            sqlx::query_scalar(&format!("SELECT max(version) FROM {schema}.migrations"))
                .fetch_one(&mut lease)
                .await
                .map_err(Error::from_sqlx)?;
        Ok(version.unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_1_partitions_the_events_table_or_stays_as_released() {
        let released = MIGRATIONS[0].sql;
        assert_eq!(partitioned(released, 1).unwrap(), released);
        let sql = partitioned(released, 4).unwrap();
        assert!(sql.contains(") PARTITION BY HASH (stream_id);"));
        assert!(sql.contains("FOR VALUES WITH (MODULUS 4, REMAINDER 3);"));
        assert!(!sql.contains("events_p4 "));
        assert!(sql.contains("CREATE INDEX events_global_order ON"));
        assert!(!sql.contains("CREATE UNIQUE INDEX events_global_order"));
        assert_eq!(sql.matches("BEFORE TRUNCATE ON").count(), 5);
    }
}
