//! Inline read models through the repository: a command's events and the read model's rows
//! commit together, and a refused read model appends nothing, while conflicts and retries,
//! idempotency keys and snapshots work as for any command.

mod common;

use std::convert::Infallible;
use std::sync::Arc;

use esrs_core::prelude::*;
use esrs_core::{BoxError, Error, Projection, RecordedEvent};
use esrs_postgres::sqlx;
use esrs_postgres::{InlineReadModel, PgStore, PgTransaction};
use serde::{Deserialize, Serialize};

#[derive(Event, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[event(name = "inline.ItemAdded")]
struct ItemAdded {
    item: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Basket {
    items: Vec<String>,
}

#[aggregate(name = "basket", snapshot_every = 2)]
impl Basket {
    #[apply]
    fn added(&mut self, e: &ItemAdded) {
        self.items.push(e.item.clone());
    }
}

fn add(item: &str) -> impl FnMut(&Basket) -> Result<ItemAdded, Infallible> + Send + use<> {
    let item = item.to_owned();
    move |_| Ok(ItemAdded { item: item.clone() })
}

/// Items per basket in `<schema>.item_counts`; refuses the item `poison`.
#[derive(Clone)]
struct ItemCounts {
    schema: String,
}

impl Projection<PgTransaction> for ItemCounts {
    type Event = BasketEvent;

    fn name(&self) -> &str {
        "item_counts"
    }

    async fn handle(
        &mut self,
        tx: &mut PgTransaction,
        event: BasketEvent,
        envelope: &RecordedEvent,
    ) -> Result<(), BoxError> {
        let BasketEvent::ItemAdded(added) = event;
        if added.item == "poison" {
            return Err("the read model refuses poison".into());
        }
        sqlx::query(&format!(
            "INSERT INTO {}.item_counts VALUES ($1, 1)
             ON CONFLICT (basket) DO UPDATE SET items = item_counts.items + 1",
            self.schema
        ))
        .bind(envelope.stream.as_str())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

async fn with_read_model() -> (common::TestStore, Repository<Basket, PgStore>) {
    let store = common::fresh_store().await;
    let schema = store.schema().to_owned();
    sqlx::query(&format!(
        "CREATE TABLE {schema}.item_counts (basket text PRIMARY KEY, items bigint NOT NULL)"
    ))
    .execute(store.pool())
    .await
    .expect("the read model's table");
    let repo = Repository::<Basket, _>::new(store.store.clone())
        .with_appender(InlineReadModel::new(ItemCounts { schema }));
    (store, repo)
}

async fn count(store: &PgStore, basket: &str) -> Option<i64> {
    sqlx::query_scalar(&format!(
        "SELECT items FROM {}.item_counts WHERE basket = $1",
        store.schema()
    ))
    .bind(basket)
    .fetch_optional(store.pool())
    .await
    .expect("the read model reads")
}

#[tokio::test]
async fn the_events_and_the_read_model_commit_together_and_a_refusal_appends_nothing() {
    let (store, repo) = with_read_model().await;
    let id = StreamId::new("1").unwrap();
    repo.execute(&id, add("book")).await.expect("appended");
    repo.execute(&id, add("pen")).await.expect("appended");
    assert_eq!(count(&store, "basket-1").await, Some(2));
    // Snapshots keep working: one at version 2.
    let stream = repo.stream_of(&id).unwrap();
    let snapshot = store
        .load_snapshot(&stream, <Basket as esrs_core::Aggregate>::SNAPSHOT_KEY)
        .await
        .expect("load");
    assert_eq!(snapshot.map(|s| s.version), Some(2));

    let refused = repo.execute(&id, add("poison")).await.unwrap_err();
    assert!(
        matches!(
            &refused,
            ExecuteError::Failed(Error::InlineReadModel { projection, .. }) if projection == "item_counts"
        ),
        "{refused:?}"
    );
    // The refused append's transaction has ended by the time the error is returned: its
    // locks do not wait for the runtime to hand the connection back to the pool.
    assert!(
        common::lockable_now(&format!("{}.events", store.schema())),
        "the refused append still holds its locks"
    );
    assert_eq!(store.stream_version(&stream).await.expect("version"), 2);
    assert_eq!(count(&store, "basket-1").await, Some(2));
    assert_eq!(
        repo.load(&id).await.expect("load").state.items,
        ["book", "pen"]
    );
}

#[tokio::test]
async fn a_repeated_key_applies_once_and_conflicting_writers_each_apply_once() {
    let (store, repo) = with_read_model().await;
    let id = StreamId::new("2").unwrap();
    let key = IdempotencyKey::new("request-1").unwrap();
    let first = repo
        .execute(&id, add("book"))
        .idempotency_key(key.clone())
        .await
        .expect("appended");
    let again = repo
        .execute(&id, add("book"))
        .idempotency_key(key)
        .await
        .expect("replayed");
    assert!(!first.outcome.deduplicated && again.outcome.deduplicated);
    assert_eq!(count(&store, "basket-2").await, Some(1));

    // Sixteen writers on one basket, each retrying its conflicts: every event appended is
    // counted once, whatever the attempts that lost.
    let repo = Arc::new(repo.with_retries(50));
    let mut tasks = Vec::new();
    for n in 0..16 {
        let (repo, id) = (repo.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            repo.execute(&id, add(&format!("item-{n}")))
                .await
                .map(|_| ())
        }));
    }
    for task in tasks {
        task.await
            .expect("the task runs")
            .expect("the command succeeds");
    }
    let stream = repo.stream_of(&id).unwrap();
    assert_eq!(store.stream_version(&stream).await.expect("version"), 17);
    assert_eq!(count(&store, "basket-2").await, Some(17));
}
