//! A `#[aggregate]` cart run by a `Repository` over the in-memory store: commands, the
//! generated event enum, snapshots every N events and snapshots of another fold ignored.

#![deny(unused_qualifications, missing_docs)]

use esrs_core::prelude::*;
use esrs_core::store::{Snapshot, SnapshotKey};
use esrs_core::{DecodeError, EventSet};
use serde::{Deserialize, Serialize};

/// An item was put in the cart.
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ItemAdded {
    /// The item.
    pub item: String,
}

/// An item was taken out, version 2: with a reason.
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(version = 2, upcast_from = ItemRemovedV1)]
pub struct ItemRemoved {
    /// The item.
    pub item: String,
    /// Why, if the shopper said.
    pub reason: Option<String>,
}

/// An item was taken out, version 1.
#[derive(Event, Deserialize, Debug)]
#[event(name = "ItemRemoved", version = 1)]
pub struct ItemRemovedV1 {
    /// The item.
    pub item: String,
}

impl From<ItemRemovedV1> for ItemRemoved {
    fn from(v1: ItemRemovedV1) -> Self {
        Self {
            item: v1.item,
            reason: None,
        }
    }
}

/// The cart was checked out.
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "CartCheckedOut")]
pub struct CheckedOut;

/// A shopping cart.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cart {
    items: Vec<String>,
    checked_out: bool,
}

/// Why the cart refused a command.
#[derive(Debug, PartialEq)]
pub enum CartError {
    /// The cart is already checked out.
    CheckedOut,
    /// Nothing to check out.
    Empty,
}

#[aggregate(name = "cart", snapshot_every = 3)]
impl Cart {
    #[apply]
    fn added(&mut self, e: &ItemAdded) {
        self.items.push(e.item.clone());
    }

    #[apply]
    fn removed(&mut self, e: &ItemRemoved) {
        self.items.retain(|i| *i != e.item);
    }

    #[apply]
    fn checked_out(&mut self, _: &CheckedOut) {
        self.checked_out = true;
    }

    /// Adds an item.
    pub fn add_item(&self, item: &str) -> Result<ItemAdded, CartError> {
        if self.checked_out {
            return Err(CartError::CheckedOut);
        }
        Ok(ItemAdded { item: item.into() })
    }

    /// Removes every copy of an item; nothing happens if it is not in the cart.
    pub fn remove_item(&self, item: &str) -> Result<Option<ItemRemoved>, CartError> {
        Ok(self.items.iter().any(|i| i == item).then(|| ItemRemoved {
            item: item.into(),
            reason: None,
        }))
    }

    /// Checks out, removing the given item first.
    pub fn check_out_without(&self, item: &str) -> Result<Vec<CartEvent>, CartError> {
        if self.items.is_empty() {
            return Err(CartError::Empty);
        }
        let mut events: Vec<CartEvent> = self
            .remove_item(item)?
            .into_iter()
            .map(Into::into)
            .collect();
        events.push(CheckedOut.into());
        Ok(events)
    }

    /// The number of items: a query, not a command.
    pub fn item_count(&self) -> usize {
        self.items.len()
    }
}

fn carts() -> Repository<Cart, InMemoryStore> {
    Repository::new(InMemoryStore::new())
}

/// Another crate matches `ExecuteError` without a wildcard arm, and reads the version of
/// a `Loaded`, an `Executed` and a `HistoryEntry` the same way.
#[tokio::test]
async fn execute_errors_match_exhaustively_and_versions_read_alike() {
    let carts = carts();
    let id = StreamId::new("exhaustive").unwrap();
    let refused = carts.execute(&id, |c| c.check_out_without("pen")).await;
    let what = match refused {
        Ok(_) => "done",
        Err(ExecuteError::Rejected(CartError::Empty)) => "empty",
        Err(ExecuteError::Rejected(CartError::CheckedOut)) => "checked out",
        Err(ExecuteError::Failed(_)) => "failed",
    };
    assert_eq!(what, "empty");
    let executed = carts.execute(&id, |c| c.add_item("book")).await.unwrap();
    let loaded = carts.load(&id).await.unwrap();
    let history = carts.history(&id).await.unwrap();
    assert_eq!(
        (executed.version(), loaded.version(), history[0].version()),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn commands_fold_through_the_generated_aggregate() {
    let carts = carts();
    let id = StreamId::new("42").unwrap();
    carts.execute(&id, |c| c.add_item("book")).await.unwrap();
    carts.execute(&id, |c| c.add_item("pen")).await.unwrap();
    let done = carts
        .execute(&id, |c| c.check_out_without("pen"))
        .await
        .unwrap();
    assert_eq!(
        done.events,
        vec![
            CartEvent::ItemRemoved(ItemRemoved {
                item: "pen".into(),
                reason: None
            }),
            CartEvent::CheckedOut(CheckedOut),
        ]
    );
    let cart = carts.load(&id).await.unwrap();
    assert_eq!(
        (cart.item_count(), cart.checked_out, cart.version),
        (1, true, 4)
    );
    let refused = carts.execute(&id, |c| c.add_item("ink")).await.unwrap_err();
    assert_eq!(refused.rejected(), Some(&CartError::CheckedOut));

    let history = carts.history(&id).await.unwrap();
    let names: Vec<&str> = history.iter().map(|h| h.recorded.name.as_str()).collect();
    assert_eq!(
        names,
        ["ItemAdded", "ItemAdded", "ItemRemoved", "CartCheckedOut"]
    );
    assert_eq!(
        <CartEvent as EventSet>::NAMES,
        ["ItemAdded", "ItemRemoved", "CartCheckedOut"]
    );
    assert_eq!(<Cart as Aggregate>::NAME, "cart");
}

#[test]
fn the_event_enum_decodes_by_stored_name_and_version() {
    let old = CartEvent::decode("ItemRemoved", 1, r#"{"item":"pen"}"#).unwrap();
    assert_eq!(
        old,
        CartEvent::ItemRemoved(ItemRemoved {
            item: "pen".into(),
            reason: None
        })
    );
    assert_eq!(old.schema_version(), 2);
    let unknown = CartEvent::decode("ItemStolen", 1, "{}").unwrap_err();
    match unknown {
        DecodeError::UnknownName { name, known } => {
            assert_eq!(name, "ItemStolen");
            assert_eq!(known, ["ItemAdded", "ItemRemoved", "CartCheckedOut"]);
        }
        other => panic!("expected UnknownName, got {other:?}"),
    }
    let future = CartEvent::decode("CartCheckedOut", 2, "null").unwrap_err();
    assert!(
        matches!(&future, DecodeError::UnknownVersion { name: "CartCheckedOut", version: 2, known } if known == &[1]),
        "{future:?}"
    );
    let malformed = CartEvent::decode("ItemAdded", 1, r#"{"item":3}"#).unwrap_err();
    assert!(matches!(
        malformed,
        DecodeError::Malformed {
            name: "ItemAdded",
            version: 1,
            ..
        }
    ));
    // A payload is parsed once, by the decode: text that is not JSON at all is malformed too.
    for text in [r#"{"item":"pen""#, "", "{item: pen}"] {
        let error = CartEvent::decode("ItemAdded", 1, text).unwrap_err();
        assert!(
            matches!(
                error,
                DecodeError::Malformed {
                    name: "ItemAdded",
                    version: 1,
                    ..
                }
            ),
            "{text:?}: {error:?}"
        );
    }
}

async fn snapshot_of(carts: &Repository<Cart, InMemoryStore>, id: &StreamId) -> Option<Snapshot> {
    let stream = carts.stream_of(id).unwrap();
    carts
        .store()
        .load_snapshot(&stream, Cart::SNAPSHOT_KEY)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_snapshot_is_taken_every_n_events_and_used_by_loads() {
    let carts = carts();
    let id = StreamId::new("7").unwrap();
    for item in ["a", "b"] {
        carts.execute(&id, |c| c.add_item(item)).await.unwrap();
    }
    assert!(snapshot_of(&carts, &id).await.is_none());
    carts.execute(&id, |c| c.add_item("c")).await.unwrap();
    let snapshot = snapshot_of(&carts, &id).await.unwrap();
    assert_eq!((snapshot.version, snapshot.key), (3, Cart::SNAPSHOT_KEY));
    let state: Cart = serde_json::from_str(snapshot.payload.get()).unwrap();
    assert_eq!(state.items, ["a", "b", "c"]);
    assert_eq!(Cart::SNAPSHOT_EVERY, Some(3));
    assert_eq!(Cart::SNAPSHOT_KEY.schema_version, 1);
    assert_ne!(Cart::SNAPSHOT_KEY.fingerprint, 0);
    carts.execute(&id, |c| c.add_item("d")).await.unwrap();
    let cart = carts.load(&id).await.unwrap();
    assert_eq!((cart.item_count(), cart.version), (4, 4));
}

#[tokio::test]
async fn a_snapshot_written_by_another_fold_is_ignored() {
    let carts = carts();
    let id = StreamId::new("9").unwrap();
    for item in ["a", "b"] {
        carts.execute(&id, |c| c.add_item(item)).await.unwrap();
    }
    // A snapshot written by other fold logic (another fingerprint) that claims the cart
    // holds a forged item at version 2.
    let forged = Cart {
        items: vec!["forged".into()],
        checked_out: true,
    };
    let payload = serde_json::value::to_raw_value(&forged).unwrap();
    let stale = SnapshotKey::new(
        Cart::SNAPSHOT_KEY.schema_version,
        Cart::SNAPSHOT_KEY.fingerprint ^ 1,
    );
    let stream = carts.stream_of(&id).unwrap();
    carts
        .store()
        .save_snapshot(Snapshot::new(stream.clone(), 2, stale, payload.clone()))
        .await
        .unwrap();
    let cart = carts.load(&id).await.unwrap();
    assert_eq!(
        cart.state,
        Cart {
            items: vec!["a".into(), "b".into()],
            checked_out: false
        }
    );

    // The same snapshot under the aggregate's own key is trusted: that is what a snapshot is.
    carts
        .store()
        .save_snapshot(Snapshot::new(stream, 2, Cart::SNAPSHOT_KEY, payload))
        .await
        .unwrap();
    let cart = carts.load(&id).await.unwrap();
    assert_eq!(cart.state, forged);
}

#[test]
fn the_catalog_knows_the_cart_and_its_events() {
    let catalog = esrs_core::catalog::program();
    let cart = catalog
        .aggregates()
        .iter()
        .find(|a| a.name() == "cart")
        .unwrap();
    assert_eq!(
        cart.events(),
        ["ItemAdded", "ItemRemoved", "CartCheckedOut"]
    );
    assert!(cart.rust_type().ends_with("::Cart"));
    let removed: Vec<_> = catalog
        .events_named("ItemRemoved")
        .map(|e| e.version())
        .collect();
    assert_eq!(removed, [1, 2]);
    esrs_core::catalog::check().unwrap();
}

/// A state whose handler is written exactly as in the macro crate's pinned-fingerprint test.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Pinned {
    items: Vec<String>,
}

#[aggregate(name = "pinned", snapshot_every = 10)]
impl Pinned {
    #[apply]
    fn added(&mut self, e: &ItemAdded) {
        self.items.push(e.item.clone())
    }
}

#[test]
fn the_fold_fingerprint_is_stable_across_releases() {
    // Changing this number invalidates every stored snapshot of every user: only do it
    // on purpose.
    assert_eq!(
        Pinned::SNAPSHOT_KEY,
        SnapshotKey::new(1, 17_343_898_703_721_969_883)
    );
}

/// A tally declared without `snapshot_every`, with a snapshot layout version of its own.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    /// Items counted.
    pub items: u64,
}

#[aggregate(name = "tally", snapshot_version = 2)]
impl Tally {
    #[apply]
    fn added(&mut self, _: &ItemAdded) {
        self.items += 1;
    }
}

#[tokio::test]
async fn an_aggregate_without_snapshot_every_has_a_snapshot_key_for_runtime_policies() {
    use esrs_core::Aggregate;
    use esrs_core::repository::SnapshotPolicy;

    assert_eq!(Tally::SNAPSHOT_EVERY, None);
    assert_eq!(Tally::SNAPSHOT_KEY.schema_version, 2);
    assert_ne!(
        Tally::SNAPSHOT_KEY.fingerprint,
        0,
        "the fold has a fingerprint"
    );

    let store = InMemoryStore::new();
    let tallies =
        Repository::<Tally, _>::new(store.clone()).with_snapshot_policy(SnapshotPolicy::every(2));
    let id = StreamId::new("1").unwrap();
    for item in ["a", "b", "c"] {
        tallies
            .execute(&id, |_| {
                Ok::<_, std::convert::Infallible>(ItemAdded { item: item.into() })
            })
            .await
            .unwrap();
    }
    let stream = tallies.stream_of(&id).unwrap();
    let snapshot = store
        .load_snapshot(&stream, Tally::SNAPSHOT_KEY)
        .await
        .unwrap()
        .expect("saved under the aggregate's key");
    assert_eq!(snapshot.version, 2);
    assert_eq!(tallies.load(&id).await.unwrap().state.items, 3);
}
