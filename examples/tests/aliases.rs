//! An event renamed with an alias: a row stored under its former name, before the rename,
//! loads through the repository beside rows stored under the new one, in memory and on
//! PostgreSQL (`DATABASE_URL`, else the local server, in a schema of its own).

use std::convert::Infallible;

use esrs_core::prelude::*;
use esrs_core::store::{AppendRequest, NewEvent};
use esrs_postgres::PgStoreOptions;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Stored as "ProductAdded" until the rename; rows of that name still decode as it.
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "ItemAdded", aliases = ["ProductAdded"])]
struct ItemAdded {
    item: String,
}

#[derive(Debug, Default)]
struct Basket {
    items: Vec<String>,
}

#[aggregate(name = "basket")]
impl Basket {
    #[apply]
    fn added(&mut self, e: &ItemAdded) {
        self.items.push(e.item.clone());
    }

    fn add(&self, item: &str) -> Result<ItemAdded, Infallible> {
        Ok(ItemAdded { item: item.into() })
    }
}

async fn an_old_row_under_an_alias_loads<S: EventStore + Clone>(store: S) {
    let baskets = Repository::<Basket, _>::new(store.clone());
    let id = StreamId::new(uuid::Uuid::new_v4().simple().to_string()).unwrap();
    let payload = serde_json::value::to_raw_value(&json!({ "item": "book" })).unwrap();
    // What the program wrote before the rename.
    store
        .append(AppendRequest::new(
            baskets.stream_of(&id).unwrap(),
            ExpectedVersion::NoStream,
            vec![NewEvent::new("ProductAdded", 1, payload)],
        ))
        .await
        .unwrap();
    baskets.execute(&id, |b| b.add("pen")).await.unwrap();

    let basket = baskets.load(&id).await.unwrap();
    assert_eq!(
        (basket.items.as_slice(), basket.version),
        (&["book".to_owned(), "pen".into()][..], 2)
    );
    let history = baskets.history(&id).await.unwrap();
    let stored: Vec<&str> = history.iter().map(|h| h.recorded.name.as_str()).collect();
    assert_eq!(
        stored,
        ["ProductAdded", "ItemAdded"],
        "history is not rewritten"
    );
    assert!(BasketEvent::handles("ProductAdded") && BasketEvent::handles("ItemAdded"));
    assert!(!BasketEvent::handles("ItemRemoved"));
}

#[tokio::test]
async fn in_memory() {
    an_old_row_under_an_alias_loads(InMemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres() {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!(
        "esrs_alias_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let store = PgStoreOptions::new()
        .schema(&schema)
        .max_connections(2)
        .connect(&url)
        .await
        .expect("the test database is reachable (set DATABASE_URL)");
    store.migrate().await.expect("migrations apply");
    let outcome = tokio::spawn(an_old_row_under_an_alias_loads(store.clone())).await;
    esrs_postgres::sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(store.pool())
        .await
        .expect("the test schema is dropped");
    outcome.unwrap();
}
