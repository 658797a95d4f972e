use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(version = 2)]
struct ItemAdded {
    item: String,
    count: u32,
}

fn main() {}
