use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

const UPGRADE: u32 = 1;

#[derive(Event, Serialize, Deserialize)]
#[event(version = 2, upcast(from = 1, with = UPGRADE))]
struct ItemAdded {
    item: String,
}

fn main() {}
