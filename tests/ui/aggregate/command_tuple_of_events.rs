use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
struct ItemAdded {
    item: String,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
struct CheckedOut;

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

    pub fn add_two(&self) -> Result<(ItemAdded, ItemAdded), String> {
        let added = ItemAdded { item: "pen".into() };
        Ok((added.clone(), added))
    }
}

fn main() {}
