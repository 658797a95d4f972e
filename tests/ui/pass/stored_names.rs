//! The names the stored-name rules accept: a stored name or alias has no whitespace or
//! control characters; an aggregate name, the stream category, has none and no `-` either.

use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "cart.item-added", aliases = ["Cart:ItemAdded/v1", "ArtículoAñadido"])]
struct ItemAdded {
    item: String,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "CartCheckedOut")]
struct CheckedOut;

#[derive(Default)]
struct Cart;

#[aggregate(name = "shopping_cart.v2")]
impl Cart {
    #[apply]
    fn added(&mut self, _: &ItemAdded) {}

    #[apply]
    fn checked_out(&mut self, _: &CheckedOut) {}
}

fn main() {
    assert_eq!(<CartEvent as EventSet>::NAMES, ["cart.item-added", "CartCheckedOut"]);
    assert_eq!(<Cart as Aggregate>::NAME, "shopping_cart.v2");
}
