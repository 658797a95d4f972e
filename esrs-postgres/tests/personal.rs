//! Personal data on PostgreSQL: keys wrapped by a master key in the store's schema, no
//! plaintext in any row of the events or snapshots tables, forget redacting one subject in
//! loads and rebuilt projections, tombstones that outlive the keys, a typed error for a
//! ciphertext moved elsewhere and for a wrong master key.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use esrs_core::personal::{
    self, KeyStore, KeyStoreError, MasterKey, PersonalDataError, SubjectKey,
};
use esrs_core::prelude::*;
use esrs_core::projection::InMemoryCheckpoints;
use esrs_core::store::{AppendRequest, NewEvent};
use esrs_core::{BoxError, DecodeError, Error, RecordedEvent};
use esrs_postgres::PgKeyStore;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use common::{TestStore, fresh_store};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "CustomerRegistered")]
#[serde(rename_all = "camelCase")]
struct CustomerRegistered {
    #[event(subject)]
    customer_id: String,
    #[event(personal)]
    full_name: Personal<String>,
    #[event(personal)]
    address: Personal<Address>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, schemars::JsonSchema)]
struct Address {
    street: String,
    city: String,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "OrderPlaced")]
struct OrderPlaced {
    customer_id: String,
    total_cents: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Shop {
    customers: BTreeMap<String, (Personal<String>, Personal<Address>)>,
    orders: u64,
}

#[aggregate(name = "shop", snapshot_every = 2)]
impl Shop {
    #[apply]
    fn registered(&mut self, e: &CustomerRegistered) {
        self.customers.insert(
            e.customer_id.clone(),
            (e.full_name.clone(), e.address.clone()),
        );
    }

    #[apply]
    fn placed(&mut self, _: &OrderPlaced) {
        self.orders += 1;
    }

    fn register(
        &self,
        id: &str,
        name: &str,
        street: &str,
    ) -> Result<CustomerRegistered, std::convert::Infallible> {
        Ok(CustomerRegistered {
            customer_id: id.to_owned(),
            full_name: Personal::new(name.to_owned()),
            address: Personal::new(Address {
                street: street.to_owned(),
                city: "Springfield".to_owned(),
            }),
        })
    }

    fn place(&self, id: &str) -> Result<OrderPlaced, std::convert::Infallible> {
        Ok(OrderPlaced {
            customer_id: id.to_owned(),
            total_cents: 1299,
        })
    }
}

const GRACE: &str = "Grace Hopper";
const GRACE_STREET: &str = "742 Evergreen Terrace";
const ALAN: &str = "Alan Turing";

fn id(text: &str) -> StreamId {
    StreamId::new(text).unwrap()
}

fn master() -> MasterKey {
    MasterKey::from_bytes([7; 32])
}

/// A shop with Grace and Alan as customers and an order: three events, a snapshot at 2.
async fn shop(store: &TestStore, keys: &PgKeyStore) -> Repository<Shop, esrs_postgres::PgStore> {
    let repo = Repository::<Shop, _>::new(store.store.clone()).with_key_store(keys.clone());
    let main = id("main");
    repo.execute(&main, |s| s.register("grace", GRACE, GRACE_STREET))
        .await
        .unwrap();
    repo.execute(&main, |s| s.register("alan", ALAN, "Bletchley Park"))
        .await
        .unwrap();
    repo.execute(&main, |s| s.place("grace")).await.unwrap();
    repo
}

/// Every row of `table`, as PostgreSQL prints it.
async fn table_text(store: &TestStore, table: &str) -> String {
    let schema = store.schema();
    let text: Option<String> = sqlx::query_scalar(&format!(
        "SELECT string_agg(t::text, E'\\n') FROM {schema}.{table} t"
    ))
    .fetch_one(store.pool())
    .await
    .unwrap();
    text.unwrap_or_default()
}

#[tokio::test]
async fn no_row_holds_the_plaintext_and_forget_redacts_one_subject() {
    let store = fresh_store().await;
    let keys = PgKeyStore::open(&store, master()).await.unwrap();
    let repo = shop(&store, &keys).await;

    let events = table_text(&store, "events").await;
    assert!(events.contains("$personal"), "{events}");
    for plaintext in [GRACE, GRACE_STREET, ALAN] {
        assert!(!events.contains(plaintext), "{plaintext} in {events}");
    }
    // The fields are bound under their stored (camelCase) names.
    // (A row's text doubles the quotes of the JSON inside it.)
    assert!(events.contains(r#"""f"":""fullName"""#), "{events}");
    // The snapshot at version 2 holds the state in clear: forget deletes it.
    let snapshots = table_text(&store, "snapshots").await;
    assert!(snapshots.contains(GRACE), "{snapshots}");
    let loaded = repo.load(&id("main")).await.unwrap();
    assert_eq!(
        loaded.customers["grace"].0.known().map(String::as_str),
        Some(GRACE)
    );

    let outcome = personal::forget(&keys, &store.store, "grace")
        .await
        .unwrap();
    assert_eq!(outcome.streams, vec![id("shop-main")]);
    for table in ["events", "snapshots"] {
        let text = table_text(&store, table).await;
        assert!(
            !text.contains(GRACE) && !text.contains(GRACE_STREET),
            "{table}: {text}"
        );
    }
    let keys_left = table_text(&store, "personal_keys").await;
    assert!(!keys_left.contains("(grace,"), "{keys_left}");

    let loaded = repo.load(&id("main")).await.unwrap();
    let grace = &loaded.customers["grace"];
    assert!(grace.0.is_forgotten() && grace.1.is_forgotten());
    assert_eq!(
        loaded.customers["alan"].0.known().map(String::as_str),
        Some(ALAN)
    );
    assert_eq!((loaded.orders, loaded.version), (1, 3));

    // A new process (no cache) agrees, and new data of Grace is refused.
    let fresh = PgKeyStore::open(&store, master()).await.unwrap();
    let repo = Repository::<Shop, _>::new(store.store.clone()).with_key_store(fresh);
    assert!(
        repo.load(&id("main")).await.unwrap().customers["grace"]
            .0
            .is_forgotten()
    );
    let refused = repo
        .execute(&id("main"), |s| s.register("grace", GRACE, GRACE_STREET))
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused,
            ExecuteError::Failed(Error::KeyStore(KeyStoreError::SubjectForgotten { .. }))
        ),
        "{refused:?}"
    );
    // Commands still run, and the next snapshot holds no plaintext of Grace.
    repo.execute(&id("main"), |s| s.place("alan"))
        .await
        .unwrap();
    let snapshots = table_text(&store, "snapshots").await;
    assert!(
        !snapshots.contains(GRACE) && snapshots.contains(ALAN),
        "{snapshots}"
    );
}

/// Customer names by id, `None` once forgotten.
#[derive(Debug, Default)]
struct Customers(BTreeMap<String, Option<String>>);

impl Projection for Customers {
    type Event = ShopEvent;

    fn name(&self) -> &str {
        "customers"
    }

    async fn handle(
        &mut self,
        _: &mut (),
        event: ShopEvent,
        _: &RecordedEvent,
    ) -> Result<(), BoxError> {
        if let ShopEvent::CustomerRegistered(e) = event {
            self.0.insert(e.customer_id, e.full_name.into_known());
        }
        Ok(())
    }

    async fn reset(&mut self, _: &mut ()) -> Result<(), BoxError> {
        self.0.clear();
        Ok(())
    }
}

#[tokio::test]
async fn a_rebuilt_projection_shows_the_redaction() {
    let store = fresh_store().await;
    let keys = PgKeyStore::open(&store, master()).await.unwrap();
    shop(&store, &keys).await;
    let mut runner = ProjectionRunner::new(
        store.store.clone(),
        InMemoryCheckpoints::new(),
        Customers::default(),
    )
    .with_key_store(keys.clone());
    runner.catch_up().await.unwrap();
    assert_eq!(runner.projection().0["grace"].as_deref(), Some(GRACE));
    personal::forget(&keys, &store.store, "grace")
        .await
        .unwrap();
    runner.rebuild().await.unwrap();
    assert_eq!(runner.projection().0["grace"], None);
    assert_eq!(runner.projection().0["alan"].as_deref(), Some(ALAN));
}

#[tokio::test]
async fn a_ciphertext_copied_into_another_event_fails_authentication() {
    let store = fresh_store().await;
    let keys = PgKeyStore::open(&store, master()).await.unwrap();
    let repo = shop(&store, &keys).await;
    let events: Vec<RecordedEvent> = store
        .read_stream(&id("shop-main"), 1, 2)
        .try_collect()
        .await
        .unwrap();
    let grace = events[0].payload().to_owned();
    let raw = |text: String| -> Box<RawValue> { RawValue::from_string(text).unwrap() };
    store
        .append(AppendRequest::new(
            id("shop-copy"),
            ExpectedVersion::Any,
            vec![NewEvent::new("CustomerRegistered", 1, raw(grace.clone()))],
        ))
        .await
        .unwrap();
    let error = repo.load(&id("copy")).await.unwrap_err();
    assert!(
        matches!(
            &error,
            Error::Decode {
                source: DecodeError::PersonalData {
                    reason: PersonalDataError::AuthenticationFailed,
                    ..
                },
                ..
            }
        ),
        "{error:?}"
    );
    // Grace's name in Alan's registration, same stream and event name: misplaced.
    let grace: serde_json::Value = serde_json::from_str(&grace).unwrap();
    let mut alan: serde_json::Value = serde_json::from_str(events[1].payload()).unwrap();
    alan["fullName"] = grace["fullName"].clone();
    store
        .append(AppendRequest::new(
            id("shop-main"),
            ExpectedVersion::Any,
            vec![NewEvent::new(
                "CustomerRegistered",
                1,
                raw(alan.to_string()),
            )],
        ))
        .await
        .unwrap();
    store.delete_snapshots(&id("shop-main")).await.unwrap();
    let error = repo.load(&id("main")).await.unwrap_err();
    assert!(
        matches!(
            &error,
            Error::Decode {
                source: DecodeError::PersonalData {
                    reason: PersonalDataError::Misplaced,
                    ..
                },
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_wrong_master_key_is_refused_at_start_up() {
    let store = fresh_store().await;
    let keys = PgKeyStore::open(&store, master()).await.unwrap();
    shop(&store, &keys).await;
    let wrong = PgKeyStore::open(&store, MasterKey::from_bytes([8; 32])).await;
    assert!(
        matches!(wrong, Err(KeyStoreError::WrongMasterKey)),
        "{wrong:?}"
    );
    // The right one opens again.
    PgKeyStore::open(&store, master()).await.unwrap();
}

#[tokio::test]
async fn keys_at_rest_are_wrapped_and_the_tombstone_outlives_them() {
    let store = fresh_store().await;
    let keys = PgKeyStore::open(&store, master()).await.unwrap();
    shop(&store, &keys).await;
    let schema = store.schema().to_owned();
    let SubjectKey::Key(key) = keys.key_for_reading("grace").await.unwrap() else {
        panic!("grace has a key");
    };
    let wrapped: Vec<u8> = sqlx::query_scalar(&format!(
        "SELECT wrapped_key FROM {schema}.personal_keys WHERE subject = 'grace'"
    ))
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert!(
        !wrapped.windows(32).any(|w| w == key.as_bytes()),
        "the stored key is the data key in clear"
    );

    personal::forget(&keys, &store.store, "grace")
        .await
        .unwrap();
    // A backup of the key table restored: the tombstone still wins.
    sqlx::query(&format!(
        "INSERT INTO {schema}.personal_keys (subject, wrapped_key) VALUES ('grace', $1)"
    ))
    .bind(&wrapped)
    .execute(store.pool())
    .await
    .unwrap();
    let fresh = PgKeyStore::open(&store, master()).await.unwrap();
    assert!(matches!(
        fresh.key_for_reading("grace").await.unwrap(),
        SubjectKey::Forgotten
    ));
    assert!(fresh.is_forgotten("grace").await.unwrap());
    // And the tombstones cannot be deleted.
    let refused = sqlx::query(&format!("DELETE FROM {schema}.forgotten_subjects"))
        .execute(store.pool())
        .await;
    assert!(refused.is_err());
    assert!(!fresh.is_forgotten("alan").await.unwrap());
}

#[tokio::test]
async fn a_forget_in_another_process_takes_effect_within_the_cache_ttl() {
    let store = fresh_store().await;
    let ttl = Duration::from_millis(300);
    let here = PgKeyStore::open(&store, master())
        .await
        .unwrap()
        .with_cache_ttl(ttl);
    let there = PgKeyStore::open(&store, master()).await.unwrap();
    shop(&store, &here).await;
    assert!(matches!(
        here.key_for_reading("grace").await.unwrap(),
        SubjectKey::Key(_)
    ));
    there.forget("grace").await.unwrap();
    // Within the TTL this process still has the key it cached ...
    assert!(matches!(
        here.key_for_reading("grace").await.unwrap(),
        SubjectKey::Key(_)
    ));
    tokio::time::sleep(ttl + Duration::from_millis(50)).await;
    // ... and after it, the forget is seen.
    assert!(matches!(
        here.key_for_reading("grace").await.unwrap(),
        SubjectKey::Forgotten
    ));
    // A forget in this process is seen at once.
    here.forget("alan").await.unwrap();
    assert!(matches!(
        here.key_for_reading("alan").await.unwrap(),
        SubjectKey::Forgotten
    ));
}

#[tokio::test]
async fn an_export_carries_personal_data_only_as_ciphertext() {
    let store = fresh_store().await;
    let keys = PgKeyStore::open(&store, master()).await.unwrap();
    shop(&store, &keys).await;
    // The snapshot of the shop's stream holds Grace's name in clear: it is not exported.
    assert!(table_text(&store, "snapshots").await.contains(GRACE));
    let mut backup = Vec::new();
    let summary = store.export(&mut backup).await.unwrap();
    assert_eq!((summary.events, summary.snapshots), (3, 0));

    let restored = fresh_store().await;
    restored.import(backup.as_slice()).await.unwrap();
    for table in ["events", "snapshots"] {
        let text = table_text(&restored, table).await;
        assert!(
            !text.contains(GRACE) && !text.contains(ALAN),
            "{table}: {text}"
        );
    }
    assert!(table_text(&restored, "events").await.contains("$personal"));
}
