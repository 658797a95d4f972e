use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::{Deserialize, Serialize};
use serde_json::json;
use serde_json::value::RawValue;

use super::report::diff;
use super::*;
use crate::error::EncodeError;
use crate::store::{Payload, SnapshotKey, encode_json};
use crate::{Aggregate, DecodeError, EventSet, IntoEvents};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ItemAdded {
    item: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ItemRemoved {
    item: String,
    reason: Option<String>,
}

#[derive(Deserialize)]
struct ItemRemovedV1 {
    item: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CheckedOut;

/// An event whose serde attributes lose a field: it does not survive a round trip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Noted {
    text: String,
    #[serde(skip_deserializing)]
    by: String,
}

#[derive(Debug, Clone, PartialEq)]
enum CartEvent {
    ItemAdded(ItemAdded),
    ItemRemoved(ItemRemoved),
    CheckedOut(CheckedOut),
    Noted(Noted),
}

impl From<ItemAdded> for CartEvent {
    fn from(e: ItemAdded) -> Self {
        Self::ItemAdded(e)
    }
}
impl From<ItemRemoved> for CartEvent {
    fn from(e: ItemRemoved) -> Self {
        Self::ItemRemoved(e)
    }
}
impl From<CheckedOut> for CartEvent {
    fn from(e: CheckedOut) -> Self {
        Self::CheckedOut(e)
    }
}
impl From<Noted> for CartEvent {
    fn from(e: Noted) -> Self {
        Self::Noted(e)
    }
}
impl IntoEvents<CartEvent> for ItemAdded {
    fn into_events(self) -> Vec<CartEvent> {
        vec![self.into()]
    }
}

impl EventSet for CartEvent {
    const NAMES: &'static [&'static str] = &["ItemAdded", "ItemRemoved", "CartCheckedOut", "Noted"];
    fn name(&self) -> &'static str {
        match self {
            Self::ItemAdded(_) => "ItemAdded",
            Self::ItemRemoved(_) => "ItemRemoved",
            Self::CheckedOut(_) => "CartCheckedOut",
            Self::Noted(_) => "Noted",
        }
    }
    fn schema_version(&self) -> u32 {
        match self {
            Self::ItemRemoved(_) => 2,
            _ => 1,
        }
    }
    fn encode(&self) -> Result<Payload, EncodeError> {
        match self {
            Self::ItemAdded(e) => encode_json("ItemAdded", e),
            Self::ItemRemoved(e) => encode_json("ItemRemoved", e),
            Self::CheckedOut(e) => encode_json("CartCheckedOut", e),
            Self::Noted(e) => encode_json("Noted", e),
        }
    }
    fn decode(name: &str, version: u32, payload: &str) -> Result<Self, DecodeError> {
        Ok(match (name, version) {
            ("ItemAdded", 1) => Self::ItemAdded(DecodeError::parse("ItemAdded", 1, payload)?),
            ("ItemRemoved", 2) => Self::ItemRemoved(DecodeError::parse("ItemRemoved", 2, payload)?),
            ("ItemRemoved", 1) => {
                let v1: ItemRemovedV1 = DecodeError::parse("ItemRemoved", 1, payload)?;
                Self::ItemRemoved(ItemRemoved {
                    item: v1.item,
                    reason: None,
                })
            }
            ("ItemRemoved", v) => {
                return Err(DecodeError::UnknownVersion {
                    name: "ItemRemoved",
                    version: v,
                    known: vec![1, 2],
                });
            }
            ("CartCheckedOut", _) => {
                Self::CheckedOut(DecodeError::parse("CartCheckedOut", 1, payload)?)
            }
            ("Noted", _) => Self::Noted(DecodeError::parse("Noted", 1, payload)?),
            _ => {
                return Err(DecodeError::UnknownName {
                    name: name.to_owned(),
                    known: Self::NAMES.to_vec(),
                });
            }
        })
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Cart {
    items: Vec<String>,
    checked_out: bool,
}

#[derive(Debug, PartialEq)]
enum CartError {
    Empty,
    AlreadyCheckedOut,
}

impl Aggregate for Cart {
    const NAME: &'static str = "cart";
    type Event = CartEvent;
    fn apply(&mut self, event: &CartEvent) {
        match event {
            CartEvent::ItemAdded(e) => self.items.push(e.item.clone()),
            CartEvent::ItemRemoved(e) => {
                let at = self.items.iter().position(|i| *i == e.item);
                self.items
                    .remove(at.expect("removed an item that is in the cart"));
            }
            CartEvent::CheckedOut(_) => self.checked_out = true,
            CartEvent::Noted(_) => {}
        }
    }
}

impl Cart {
    fn add_item(&self, item: &str) -> Result<ItemAdded, CartError> {
        if self.checked_out {
            return Err(CartError::AlreadyCheckedOut);
        }
        Ok(ItemAdded { item: item.into() })
    }

    /// Adds the item unless the cart already holds it: idempotent.
    fn ensure_item(&self, item: &str) -> Result<Option<CartEvent>, CartError> {
        if self.items.iter().any(|i| i == item) {
            return Ok(None);
        }
        self.add_item(item).map(|e| Some(e.into()))
    }

    fn check_out(&self) -> Result<Vec<CartEvent>, CartError> {
        if self.checked_out {
            return Err(CartError::AlreadyCheckedOut);
        }
        if self.items.is_empty() {
            return Err(CartError::Empty);
        }
        Ok(vec![CheckedOut.into()])
    }

    fn empty_out(&self) -> Result<Vec<CartEvent>, CartError> {
        Ok(self
            .items
            .iter()
            .map(|item| {
                ItemRemoved {
                    item: item.clone(),
                    reason: Some("emptied".into()),
                }
                .into()
            })
            .collect())
    }
}

fn added(item: &str) -> ItemAdded {
    ItemAdded { item: item.into() }
}

/// Runs `f`, which must fail, and returns its failure message.
fn failure(f: impl FnOnce()) -> String {
    let payload = catch_unwind(AssertUnwindSafe(f)).expect_err("the test should have failed");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .expect("a text message")
}

#[test]
fn then_accepts_the_expected_events_and_returns_the_state() {
    let then = Cart::given([added("book")])
        .when(|cart| cart.check_out())
        .then([CheckedOut])
        .and_state(|cart| cart.checked_out && cart.items == ["book"]);
    assert_eq!(then.events(), [CartEvent::CheckedOut(CheckedOut)]);
    assert!(then.into_state().checked_out);

    Cart::given_nothing()
        .when(|cart| cart.add_item("pen"))
        .then([added("pen")])
        .and_state(|cart| assert_eq!(cart.items, ["pen"]));
}

#[test]
fn then_shows_a_diff_of_stored_names_and_payloads() {
    let message = failure(|| {
        Cart::given([added("book"), added("pen")])
            .when(|cart| cart.empty_out())
            .then([
                CartEvent::from(ItemRemoved {
                    item: "book".into(),
                    reason: Some("emptied".into()),
                }),
                CheckedOut.into(),
            ]);
    });
    assert_eq!(
        message,
        "the command produced other events than expected (- expected, + actual):\n      \
         ItemRemoved v2 {\"item\":\"book\",\"reason\":\"emptied\"}\n    \
         - CartCheckedOut v1 null\n    \
         + ItemRemoved v2 {\"item\":\"pen\",\"reason\":\"emptied\"}"
    );
}

#[test]
fn then_reports_a_refused_command() {
    let message = failure(|| {
        Cart::given_nothing()
            .when(|cart| cart.check_out())
            .then([CheckedOut]);
    });
    assert_eq!(
        message,
        "the command was refused with Empty, but it should have produced 1 event: CartCheckedOut v1 null"
    );
}

#[test]
fn then_nothing_accepts_no_event_and_reports_any() {
    Cart::given([added("book")])
        .when(|cart| cart.ensure_item("book"))
        .then_nothing()
        .and_state(|cart| cart.items.len() == 1);
    let message = failure(|| {
        Cart::given([added("book")])
            .when(|cart| cart.empty_out())
            .then_nothing();
    });
    assert_eq!(
        message,
        "the command should have produced no event, but it produced 1 event: \
         ItemRemoved v2 {\"item\":\"book\",\"reason\":\"emptied\"}"
    );
}

#[test]
fn then_error_compares_the_domain_error() {
    Cart::given_nothing()
        .when(|cart| cart.check_out())
        .then_error(CartError::Empty);
    Cart::given([CartEvent::from(added("book")), CheckedOut.into()])
        .when(|cart| cart.add_item("pen"))
        .then_error(CartError::AlreadyCheckedOut);

    let message = failure(|| {
        Cart::given([CartEvent::from(added("book")), CheckedOut.into()])
            .when(|cart| cart.check_out())
            .then_error(CartError::Empty);
    });
    assert_eq!(
        message,
        "the command was refused with another error than expected:\n  \
         expected: Empty\n    actual: AlreadyCheckedOut"
    );

    let message = failure(|| {
        Cart::given([added("book"), added("pen")])
            .when(|cart| cart.check_out())
            .then_error(CartError::Empty);
    });
    assert_eq!(
        message,
        "the command should have been refused with Empty, but it succeeded and produced \
         1 event: CartCheckedOut v1 null"
    );
}

#[test]
fn then_error_matching_takes_a_predicate() {
    Cart::given_nothing()
        .when(|cart| cart.check_out())
        .then_error_matching(|e| matches!(e, CartError::Empty));
    Cart::given_nothing()
        .when(|cart| cart.check_out())
        .then_error_matching(|e| assert_eq!(*e, CartError::Empty));
    let message = failure(|| {
        Cart::given_nothing()
            .when(|cart| cart.check_out())
            .then_error_matching(|e| matches!(e, CartError::AlreadyCheckedOut));
    });
    assert_eq!(
        message,
        "the command was refused with Empty, which does not satisfy the predicate"
    );
    let message = failure(|| {
        Cart::given_nothing()
            .when(|cart| cart.add_item("book"))
            .then_error_matching(|_| true);
    });
    assert_eq!(
        message,
        "the command should have been refused, but it succeeded and produced 1 event: \
         ItemAdded v1 {\"item\":\"book\"}"
    );
}

#[test]
fn then_state_checks_the_state_after_the_events() {
    Cart::given([added("book")])
        .when(|cart| cart.add_item("pen"))
        .then_state(|cart| cart.items == ["book", "pen"]);
    let message = failure(|| {
        Cart::given([added("book")])
            .when(|cart| cart.add_item("pen"))
            .then_state(|cart| cart.items.is_empty());
    });
    assert_eq!(
        message,
        "the state after 1 event: ItemAdded v1 {\"item\":\"pen\"} does not satisfy the predicate"
    );
    let message = failure(|| {
        Cart::given_nothing()
            .when(|cart| cart.check_out())
            .then_state(|_| true);
    });
    assert_eq!(message, "the command was refused with Empty");
}

#[test]
fn then_idempotent_repeats_the_command_after_its_own_events() {
    let then = Cart::given_nothing()
        .when(|cart| cart.ensure_item("book"))
        .then_idempotent();
    assert_eq!(then.events(), [CartEvent::ItemAdded(added("book"))]);

    let message = failure(|| {
        Cart::given_nothing()
            .when(|cart| cart.add_item("book"))
            .then_idempotent();
    });
    assert_eq!(
        message,
        "the command is not idempotent: it produced 1 event: ItemAdded v1 {\"item\":\"book\"}, \
         and repeated after them it produced 1 event: ItemAdded v1 {\"item\":\"book\"}"
    );
    let message = failure(|| {
        Cart::given([added("book")])
            .when(|cart| cart.check_out())
            .then_idempotent();
    });
    assert_eq!(
        message,
        "the command is not idempotent: it produced 1 event: CartCheckedOut v1 null, \
         and repeated after them it was refused with AlreadyCheckedOut"
    );
}

#[test]
fn produced_events_must_survive_a_store_round_trip() {
    let message = failure(|| {
        Cart::given_nothing()
            .when(|_| {
                Ok::<_, CartError>(CartEvent::Noted(Noted {
                    text: "gift".into(),
                    by: "ada".into(),
                }))
            })
            .then_state(|_| true);
    });
    assert_eq!(
        message,
        "event 1 produced by the command does not survive a store round trip; check its \
         serde attributes and upcasters:\n  \
         encoded:             Noted v1 {\"by\":\"ada\",\"text\":\"gift\"}\n  \
         decoded and encoded: Noted v1 {\"by\":\"\",\"text\":\"gift\"}"
    );
}

#[test]
fn given_events_must_survive_a_store_round_trip() {
    let message = failure(|| {
        let _ = Cart::given([
            CartEvent::from(added("book")),
            Noted {
                text: "gift".into(),
                by: "ada".into(),
            }
            .into(),
        ]);
    });
    assert!(
        message.starts_with("given event 2 does not survive a store round trip"),
        "{message}"
    );
}

#[test]
fn a_panicking_handler_names_the_event() {
    let message = failure(|| {
        Cart::given_nothing()
            .when(|cart| cart.add_item("book"))
            .then([added("book")])
            .and_state(|_| true);
        let _ = Cart::given([ItemRemoved {
            item: "book".into(),
            reason: None,
        }]);
    });
    assert_eq!(
        message,
        "applying given event 1 (ItemRemoved v2 {\"item\":\"book\",\"reason\":null}) \
         panicked: removed an item that is in the cart"
    );
}

#[test]
fn stored_rows_load_through_the_upcasters() {
    Cart::given([added("book"), added("pen")])
        .and_stored("ItemRemoved", 1, json!({ "item": "book" }))
        .when(|cart| cart.check_out())
        .then([CheckedOut])
        .and_state(|cart| cart.items == ["pen"]);
    let given = Cart::given_nothing().and([added("pen")]);
    assert_eq!(given.state().items, ["pen"]);

    let message = failure(|| {
        let _ = Cart::given_nothing().and_stored("ItemRemoved", 3, json!({ "item": "book" }));
    });
    assert_eq!(
        message,
        "given event 1 (ItemRemoved v3 {\"item\":\"book\"}) cannot be decoded: event \
         `ItemRemoved` is stored at version 3, which this program cannot read; it knows \
         versions [1, 2]"
    );
}

/// An aggregate whose snapshot loses a field.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Counter {
    count: u64,
    #[serde(skip_deserializing)]
    last: Option<String>,
}

impl Aggregate for Counter {
    const NAME: &'static str = "counter";
    const SNAPSHOT_EVERY: Option<u64> = Some(10);
    const SNAPSHOT_KEY: SnapshotKey = SnapshotKey {
        schema_version: 1,
        fingerprint: 7,
    };
    type Event = CartEvent;
    fn apply(&mut self, event: &CartEvent) {
        self.count += 1;
        if let CartEvent::ItemAdded(e) = event {
            self.last = Some(e.item.clone());
        }
    }
    fn encode_snapshot(&self) -> Option<Result<Payload, EncodeError>> {
        Some(crate::aggregate::encode_snapshot("counter", self))
    }
    fn decode_snapshot(payload: &RawValue) -> Option<Result<Self, serde_json::Error>> {
        Some(crate::aggregate::decode_snapshot(payload))
    }
}

#[test]
fn the_state_must_survive_a_snapshot_round_trip() {
    Counter::given_nothing()
        .when(|_| Ok::<_, CartError>(CartEvent::from(CheckedOut)))
        .then([CheckedOut]);
    let message = failure(|| {
        Counter::given_nothing()
            .when(|_| Ok::<_, CartError>(added("book")))
            .then([added("book")]);
    });
    assert_eq!(
        message,
        "the state does not survive a snapshot round trip; check its serde attributes:\n  \
         encoded:             {\"count\":1,\"last\":\"book\"}\n  \
         decoded and encoded: {\"count\":1,\"last\":null}"
    );
}

#[derive(Debug)]
struct OrderPlaced {
    total: u64,
}

#[derive(Debug, PartialEq)]
struct PointsAdded {
    points: u64,
}

fn points_for(order: &OrderPlaced) -> Option<PointsAdded> {
    (order.total >= 10).then_some(PointsAdded {
        points: order.total / 10,
    })
}

#[test]
fn policies_have_the_same_shape() {
    let out = PolicyTest::given(OrderPlaced { total: 200 })
        .when(points_for)
        .then([PointsAdded { points: 20 }]);
    assert_eq!(out, [PointsAdded { points: 20 }]);
    PolicyTest::given(OrderPlaced { total: 9 })
        .when(points_for)
        .then_nothing();
    let message = failure(|| {
        PolicyTest::given(OrderPlaced { total: 150 })
            .when(points_for)
            .then([PointsAdded { points: 20 }]);
    });
    assert_eq!(
        message,
        "the policy produced other output than expected (- expected, + actual):\n    \
         - PointsAdded { points: 20 }\n    + PointsAdded { points: 15 }"
    );
}

#[derive(Debug, Default, PartialEq)]
struct Shelf(Vec<String>);

fn shelve(shelf: &mut Shelf, e: &CartEvent) {
    if let CartEvent::ItemAdded(e) = e {
        shelf.0.push(e.item.clone());
    }
}

#[test]
fn projections_have_the_same_shape() {
    let shelf = ProjectionTest::given([added("book"), added("pen")])
        .when(shelve)
        .then(Shelf(vec!["book".into(), "pen".into()]));
    assert_eq!(shelf.0.len(), 2);
    ProjectionTest::<CartEvent>::given_nothing()
        .when(shelve)
        .then_state(|shelf| shelf.0.is_empty());
    let message = failure(|| {
        ProjectionTest::given([added("book")])
            .when(shelve)
            .then(Shelf(vec![]));
    });
    assert_eq!(
        message,
        "the read model after 1 event(s) is not the expected one:\n  \
         expected: Shelf([])\n    actual: Shelf([\"book\"])"
    );
    let message = failure(|| {
        ProjectionTest::given([added("book")])
            .when(|shelf: &mut Shelf, e: &CartEvent| shelve(shelf, e))
            .then_state(|shelf| shelf.0.is_empty());
    });
    assert_eq!(
        message,
        "the read model after 1 event(s) does not satisfy the predicate"
    );
}

#[test]
fn the_diff_follows_the_longest_common_subsequence() {
    let d = diff(&["a", "b", "c"], &["x", "a", "c", "d"]);
    assert_eq!(d, "    + x\n      a\n    - b\n      c\n    + d");
    assert_eq!(diff::<&str>(&[], &[]), "    (no event on either side)");
}
