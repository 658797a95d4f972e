use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(version = 2, upcast_from = ItemAddedV1)]
struct ItemAdded {
    item: String,
}

fn main() {}
