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
impl Clone for Cart {
    fn clone(&self) -> Self {
        Self { items: self.items.clone() }
    }
}

fn main() {}
