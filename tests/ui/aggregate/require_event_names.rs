use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "ItemAdded")]
struct ItemAdded {
    item: String,
}

// Stored as "CheckedOut", the type's name: renaming the type would change it.
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
struct CheckedOut;

#[derive(Default)]
struct Cart {
    items: Vec<String>,
}

#[aggregate(name = "cart", require_event_names)]
impl Cart {
    #[apply]
    fn added(&mut self, e: &ItemAdded) {
        self.items.push(e.item.clone());
    }

    #[apply]
    fn checked_out(&mut self, _: &CheckedOut) {}
}

fn main() {}
