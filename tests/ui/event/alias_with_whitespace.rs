use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(aliases = ["product added"])]
struct ItemAdded {
    item: String,
}

fn main() {}
