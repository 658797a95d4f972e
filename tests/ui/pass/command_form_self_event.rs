//! A command may name the event enum as `<Self as Aggregate>::Event`.
use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
struct ItemAdded {
    item: String,
}

#[derive(Default)]
struct Cart {
    items: Vec<String>,
}

#[aggregate(name = "cart")]
impl Cart {
    #[apply]
    fn added(&mut self, e: &ItemAdded) {
        self.items.push(e.item.clone());
    }

    fn add(&self, item: &str) -> Result<Vec<<Self as Aggregate>::Event>, String> {
        Ok(vec![ItemAdded { item: item.into() }.into()])
    }
}

fn main() {
    let events = Cart::default().add("book").unwrap();
    assert_eq!(events, [CartEvent::ItemAdded(ItemAdded { item: "book".into() })]);
}
