use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
struct ItemAdded {
    #[event(schema_any = true)]
    item: String,
}

fn main() {}
