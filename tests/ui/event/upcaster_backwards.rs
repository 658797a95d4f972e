use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

fn upgrade(value: serde_json::Value) -> Result<serde_json::Value, String> {
    Ok(value)
}

#[derive(Event, Serialize, Deserialize)]
#[event(version = 3, upcast(from = 2, to = 1, with = upgrade))]
struct ItemAdded {
    item: String,
}

fn main() {}
