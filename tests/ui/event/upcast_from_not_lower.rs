use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Deserialize)]
#[event(name = "ItemAdded", version = 2, oldest_version = 2)]
struct ItemAddedV2 {
    item: String,
}

#[derive(Event, Serialize, Deserialize)]
#[event(version = 2, upcast_from = ItemAddedV2)]
struct ItemAdded {
    item: String,
}

impl From<ItemAddedV2> for ItemAdded {
    fn from(v2: ItemAddedV2) -> Self {
        Self { item: v2.item }
    }
}

fn main() {}
