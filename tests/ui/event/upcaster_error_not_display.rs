use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

struct Refusal;

fn upgrade(value: serde_json::Value) -> Result<serde_json::Value, Refusal> {
    Ok(value)
}

#[derive(Event, Serialize, Deserialize)]
#[event(version = 2, upcast(from = 1, with = upgrade))]
struct ItemAdded {
    item: String,
}

fn main() {}
