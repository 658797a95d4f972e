use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(version = 2, upcast(from = 1, with = upgrade_v1))]
struct ItemAdded {
    item: String,
}

fn main() {}
