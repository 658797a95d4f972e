use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "", version = 0, colour = "blue")]
struct ItemAdded {
    item: String,
}

fn main() {}
