//! The main example runs end to end on PostgreSQL (`DATABASE_URL`, else the local server),
//! in a schema of its own that is dropped afterwards.

use esrs_examples::tour::{self, Ids};
use esrs_postgres::PgStoreOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tour_runs_on_postgres() {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!(
        "esrs_tour_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let store = PgStoreOptions::new()
        .schema(&schema)
        .max_connections(4)
        .connect(&url)
        .await
        .expect("the test database is reachable (set DATABASE_URL)");
    store.migrate().await.expect("migrations apply");

    let ids = Ids::unique();
    let mut out = Vec::new();
    let outcome = tour::run(store.clone(), &ids, &mut out).await;
    esrs_postgres::sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(store.pool())
        .await
        .expect("the test schema is dropped");
    outcome.unwrap();

    let out = String::from_utf8(out).unwrap();
    let account = format!("account-{}", ids.account);
    for wanted in [
        r#"snapshot taken at v3: {"items":["book","pen","lamp"],"checked_out":false}"#.to_owned(),
        "nothing stored: the first click's outcome came back (v2, 2 item(s) in the cart)".into(),
        r#"v2 loads through the upcaster as ItemRemoved(ItemRemoved { item: "pen", reason: None })"#.into(),
        "teller A's command ran 2 times; the balance is 300".into(),
        format!("concurrency conflict on stream `{account}`: expected version 2, but it is at version 4"),
        "at v3 the balance was 400".into(),
        "(when v1 was recorded) the balance was 500".into(),
    ] {
        assert!(out.contains(&wanted), "{wanted:?} missing from:\n{out}");
    }
}
