use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
enum CartEvent {
    ItemAdded { item: String },
}

fn main() {}
