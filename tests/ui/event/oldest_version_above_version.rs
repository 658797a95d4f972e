use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(version = 2, oldest_version = 3)]
struct ItemAdded {
    item: String,
}

fn main() {}
