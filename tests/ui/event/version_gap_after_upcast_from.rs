use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Deserialize)]
#[event(name = "ItemAdded")]
struct ItemAddedV1 {
    item: String,
}

#[derive(Event, Serialize, Deserialize)]
#[event(version = 3, upcast_from = ItemAddedV1)]
struct ItemAdded {
    item: String,
}

impl From<ItemAddedV1> for ItemAdded {
    fn from(v1: ItemAddedV1) -> Self {
        Self { item: v1.item }
    }
}

fn main() {}
