//! The state may be an enum with a `#[default]` variant.
use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
struct ItemAdded {
    item: String,
}

#[derive(Default)]
enum Cart {
    #[default]
    Empty,
    Filled(Vec<String>),
}

#[aggregate(name = "cart")]
impl Cart {
    #[apply]
    fn added(&mut self, e: &ItemAdded) {
        match self {
            Cart::Empty => *self = Cart::Filled(vec![e.item.clone()]),
            Cart::Filled(items) => items.push(e.item.clone()),
        }
    }
}

fn main() {
    let mut cart = Cart::default();
    cart.apply(&ItemAdded { item: "book".into() }.into());
    assert!(matches!(cart, Cart::Filled(items) if items == ["book"]));
}
