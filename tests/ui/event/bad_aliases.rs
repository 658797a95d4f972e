use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

// The name itself, a repeated alias, an empty one and one that is not a string.
#[derive(Event, Serialize, Deserialize)]
#[event(name = "ItemAdded", aliases = ["ItemAdded", "ProductAdded", "ProductAdded", "", 3])]
struct ItemAdded {
    item: String,
}

fn main() {}
