use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

fn add_unit(value: serde_json::Value) -> Result<serde_json::Value, String> {
    Ok(value)
}

#[derive(Event, Serialize, Deserialize)]
#[event(version = 3, upcast(from = 2, with = add_unit))]
struct StockCounted {
    quantity: u32,
}

fn main() {}
