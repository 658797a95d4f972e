use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(schema = false)]
struct ItemAdded {
    #[event(schema_any)]
    item: String,
}

fn main() {}
