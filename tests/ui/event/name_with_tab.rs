use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "Item\tAdded")]
struct ItemAdded {
    item: String,
}

fn main() {}
