//! The shopping cart: its rules with the given/when/then harness, and its life in a store.

use esrs_core::Version;
use esrs_core::prelude::*;
use esrs_core::store::{AppendRequest, NewEvent};
use esrs_examples::cart::{
    Cart, CartError, CartEvent, CheckedOut, ItemAdded, ItemRemoved, MAX_ITEMS,
};
use serde_json::json;

fn added(item: &str) -> ItemAdded {
    ItemAdded { item: item.into() }
}

#[test]
fn adding_an_item_puts_it_in_the_cart() {
    Cart::given_nothing()
        .when(|cart| cart.add_item("book"))
        .then([added("book")])
        .and_state(|cart| cart.items() == ["book"]);
}

#[test]
fn a_full_cart_refuses_another_item() {
    Cart::given((0..MAX_ITEMS).map(|i| added(&format!("item {i}"))))
        .when(|cart| cart.add_item("one too many"))
        .then_error(CartError::Full);
}

#[test]
fn removing_an_item_records_why() {
    Cart::given([added("book"), added("lamp")])
        .when(|cart| cart.remove_item("lamp", Some("too big")))
        .then([ItemRemoved {
            item: "lamp".into(),
            reason: Some("too big".into()),
        }])
        .and_state(|cart| cart.items() == ["book"]);
    Cart::given([added("book")])
        .when(|cart| cart.remove_item("lamp", None))
        .then_error(CartError::NotInCart("lamp".into()));
}

#[test]
fn emptying_the_cart_is_idempotent() {
    Cart::given([added("book"), added("pen")])
        .when(|cart| cart.empty())
        .then_idempotent()
        .and_state(|cart| cart.items().is_empty());
    Cart::given_nothing()
        .when(|cart| cart.empty())
        .then_nothing();
}

#[test]
fn checking_out_needs_items_and_happens_once() {
    Cart::given([added("book")])
        .when(|cart| cart.check_out())
        .then([CheckedOut])
        .and_state(|cart| cart.is_checked_out());
    Cart::given_nothing()
        .when(|cart| cart.check_out())
        .then_error(CartError::Empty);
    Cart::given([CartEvent::from(added("book")), CheckedOut.into()])
        .when(|cart| cart.check_out())
        .then_error(CartError::AlreadyCheckedOut);
    Cart::given([CartEvent::from(added("book")), CheckedOut.into()])
        .when(|cart| cart.add_item("pen"))
        .then_error_matching(|e| matches!(e, CartError::AlreadyCheckedOut));
}

#[test]
fn an_item_removed_v1_row_loads_through_its_upcaster() {
    Cart::given([added("book"), added("pen")])
        .and_stored("ItemRemoved", 1, json!({ "item": "pen" }))
        .when(|cart| cart.check_out())
        .then([CheckedOut])
        .and_state(|cart| cart.items() == ["book"]);
}

fn id(s: &str) -> StreamId {
    StreamId::new(s).unwrap()
}

#[tokio::test]
async fn a_snapshot_is_taken_every_three_events_and_changes_no_result() {
    let store = InMemoryStore::new();
    let carts = Repository::<Cart, _>::new(store.clone());
    let cart = id("1");
    let stream = carts.stream_of(&cart).unwrap();
    let snapshot_version = || async {
        store
            .load_snapshot(&stream, Cart::SNAPSHOT_KEY)
            .await
            .unwrap()
            .map(|s| s.version)
    };

    for (n, item) in ["a", "b", "c", "d", "e", "f", "g"].into_iter().enumerate() {
        carts.execute(&cart, |c| c.add_item(item)).await.unwrap();
        let expected = match n + 1 {
            1 | 2 => None,
            3..=5 => Some(3),
            _ => Some(6),
        };
        assert_eq!(snapshot_version().await, expected, "after {} events", n + 1);
    }
    let from_snapshot = carts.load(&cart).await.unwrap();
    assert_eq!(from_snapshot.version, 7);
    assert_eq!(from_snapshot.items(), ["a", "b", "c", "d", "e", "f", "g"]);

    store.clear_snapshots();
    let from_events = carts.load(&cart).await.unwrap();
    assert_eq!(from_events, from_snapshot);
}

#[tokio::test]
async fn a_double_click_appends_once() {
    let store = InMemoryStore::new();
    let carts = Repository::<Cart, _>::new(store.clone());
    let cart = id("2");
    let click = IdempotencyKey::new("request-17").unwrap();

    let first = carts
        .execute(&cart, |c| c.add_item("pen"))
        .idempotency_key(click.clone())
        .await
        .unwrap();
    let second = carts
        .execute(&cart, |c| c.add_item("pen"))
        .idempotency_key(click)
        .await
        .unwrap();

    assert!(!first.outcome.deduplicated);
    assert!(second.outcome.deduplicated);
    assert_eq!(second.outcome.last_version, first.outcome.last_version);
    assert_eq!(second.events, first.events);
    assert_eq!(store.len(), 1);
    assert_eq!(carts.load(&cart).await.unwrap().items(), ["pen"]);
}

#[tokio::test]
async fn an_old_row_written_through_the_store_loads_through_the_upcaster() {
    let store = InMemoryStore::new();
    let carts = Repository::<Cart, _>::new(store.clone());
    let cart = id("7");
    let payload = |v: serde_json::Value| serde_json::value::to_raw_value(&v).unwrap();
    store
        .append(AppendRequest::new(
            carts.stream_of(&cart).unwrap(),
            ExpectedVersion::NoStream,
            vec![
                NewEvent::new("ItemAdded", 1, payload(json!({ "item": "pen" }))),
                NewEvent::new("ItemAdded", 1, payload(json!({ "item": "ink" }))),
                NewEvent::new("ItemRemoved", 1, payload(json!({ "item": "pen" }))),
            ],
        ))
        .await
        .unwrap();

    let history = carts.history(&cart).await.unwrap();
    assert_eq!(history[2].recorded.schema_version, 1);
    assert_eq!(
        history[2].event,
        CartEvent::from(ItemRemoved {
            item: "pen".into(),
            reason: None
        })
    );
    let loaded = carts.load(&cart).await.unwrap();
    assert_eq!(
        (loaded.items(), loaded.version),
        (&["ink".to_owned()][..], 3)
    );

    // New rows are written at version 2 and read back as they were written.
    carts
        .execute(&cart, |c| c.remove_item("ink", Some("dried up")))
        .await
        .unwrap();
    let mut tail = store.read_stream(&carts.stream_of(&cart).unwrap(), 4, Version::MAX);
    let row = futures_util::StreamExt::next(&mut tail)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((row.name.as_str(), row.schema_version), ("ItemRemoved", 2));
    assert_eq!(row.payload(), r#"{"item":"ink","reason":"dried up"}"#);
}
