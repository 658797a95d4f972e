use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(version = 4294967296)]
struct ItemAdded {
    item: String,
}

fn main() {}
