//! Least privilege: the rights of an application role that uses the store's schema without
//! owning it, granted by [`PgStore::grant_app_role`].

use crate::error::{Error, Result};
use crate::store::PgStore;

impl PgStore {
    /// Grants `role` exactly the rights an application needs to use this store's schema,
    /// and no more; run it as the schema's owner (the role that ran [`PgStore::migrate`]),
    /// after every `migrate`. Safe to repeat.
    ///
    /// The table owner can always `ALTER TABLE … DISABLE TRIGGER` and then rewrite or delete
    /// history, so an application that must not be able to should not own the tables: let a
    /// separate owner role migrate, and let the application connect as `role`. With these
    /// grants `role` can:
    ///
    /// - read and append events (`SELECT` and `INSERT` on `events`; `EXECUTE` on the append
    ///   function; `USAGE` on the schema's sequences), but not `UPDATE`, `DELETE` or
    ///   `TRUNCATE` them, nor disable their append-only triggers (only an owner alters a
    ///   table);
    /// - read, write and delete what is not history: snapshots, idempotency keys,
    ///   checkpoints and any other table of the schema (`SELECT`, `INSERT`, `UPDATE`,
    ///   `DELETE`);
    /// - read the applied schema version (`SELECT` on `migrations`), but not migrate.
    ///
    /// Every other right `role` held on the schema's tables is revoked first, so the result
    /// is exactly this list. `role` must exist, and must not be a member of the owner role
    /// (a member inherits ownership, and with it `ALTER TABLE`).
    pub async fn grant_app_role(&self, role: &str) -> Result<()> {
        let schema = self.schema();
        let mut lease = self.connections().lease().await.map_err(Error::from_sqlx)?;
        let mut tx = lease.begin().await.map_err(Error::from_sqlx)?;
        let role: String = sqlx::query_scalar("SELECT quote_ident($1)")
            .bind(role)
            .fetch_one(&mut *tx)
            .await
            .map_err(Error::from_sqlx)?;
        let statements = [
            format!("GRANT USAGE ON SCHEMA {schema} TO {role}"),
            format!("REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {role}"),
            format!(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}"
            ),
            format!("REVOKE INSERT, UPDATE, DELETE ON {schema}.migrations FROM {role}"),
            format!("REVOKE UPDATE, DELETE ON {schema}.events FROM {role}"),
            format!("GRANT USAGE ON ALL SEQUENCES IN SCHEMA {schema} TO {role}"),
            format!("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {schema} TO {role}"),
        ];
        for statement in &statements {
            // Not prepared: each role name makes a statement of its own.
            sqlx::query(statement)
                .persistent(false)
                .execute(&mut *tx)
                .await
                .map_err(Error::from_sqlx)?;
        }
        tx.commit().await.map_err(Error::from_sqlx)?;
        Ok(())
    }
}
