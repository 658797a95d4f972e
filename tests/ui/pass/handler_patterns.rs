//! A handler may destructure its event in the parameter, and may spell its return type `()`.
use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
struct ItemAdded {
    item: String,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
struct ItemRemoved {
    item: String,
}

#[derive(Default)]
struct Cart {
    items: Vec<String>,
}

#[aggregate(name = "cart")]
impl Cart {
    #[apply]
    fn added(&mut self, ItemAdded { item }: &ItemAdded) {
        self.items.push(item.clone());
    }

    #[apply]
    fn removed(&mut self, e: &ItemRemoved) -> () {
        self.items.retain(|i| *i != e.item);
    }
}

fn main() {
    let mut cart = Cart::default();
    cart.apply(&CartEvent::ItemAdded(ItemAdded { item: "book".into() }));
    cart.apply(&ItemRemoved { item: "book".into() }.into());
    assert!(cart.items.is_empty());
}
