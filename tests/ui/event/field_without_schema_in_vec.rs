use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Line {
    sku: String,
}

#[derive(Event, Serialize, Deserialize)]
struct OrderPlaced {
    lines: Vec<Line>,
}

fn main() {}
