use esrs_core::prelude::*;
use serde::Serialize;

#[derive(Event, Serialize)]
struct ItemAdded {
    item: String,
}

fn main() {}
