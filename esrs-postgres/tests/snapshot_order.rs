//! The rows of a snapshot load come in an order the statement defines: the snapshot, then
//! the events by version. A `UNION ALL` without an `ORDER BY` of its own returns its
//! branches in whatever order the plan produces them, which a parallel plan may change.

mod common;

use common::fresh_store;
use esrs_postgres::sqlx;

/// The snapshot reads, as the store runs them.
const STATEMENTS: [(&str, &str); 1] = [(
    "read_for_fold_with_snapshot",
    include_str!("../src/store/sql/read_for_fold_with_snapshot.sql"),
)];

/// The plan's top node orders the whole result by version, so no plan of the branches can
/// change the order a load relies on.
#[tokio::test]
async fn snapshot_loads_are_ordered_by_the_statement() {
    let store = fresh_store().await;
    for (name, sql) in STATEMENTS {
        let sql = sql.replace("{schema}", store.schema());
        let (plan,): (sqlx::types::Json<serde_json::Value>,) =
            sqlx::query_as(&format!("EXPLAIN (FORMAT JSON) {sql}"))
                .bind("some-stream")
                .bind(1_i64)
                .bind(7_i64)
                .bind(1_i64)
                .bind(i64::MAX)
                .fetch_one(store.pool())
                .await
                .expect("explain");
        let top = &plan.0[0]["Plan"];
        let keys = top["Sort Key"].as_array().cloned().unwrap_or_default();
        assert!(
            keys.first()
                .and_then(|key| key.as_str())
                .is_some_and(|key| key.ends_with("version")),
            "{name}: the top node does not order the result by version: {top:#}"
        );
    }
}
