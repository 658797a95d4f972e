use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

fn upgrade(value: serde_json::Value) -> Result<serde_json::Value, String> {
    Ok(value)
}

#[derive(Event, Serialize, Deserialize)]
#[event(version = 2, upcast(from = 1, to = 3, with = upgrade))]
struct ItemAdded {
    item: String,
}

fn main() {}
