use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
struct ItemAdded {
    #[event(rename = "name")]
    item: String,
}

fn main() {}
