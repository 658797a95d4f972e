use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(schema = "no")]
struct ItemAdded {
    item: String,
}

fn main() {}
