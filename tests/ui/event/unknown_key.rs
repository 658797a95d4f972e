use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(versoin = 2)]
struct ItemAdded {
    item: String,
}

fn main() {}
