use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

// A type of the user's, without `#[derive(schemars::JsonSchema)]`.
#[derive(Serialize, Deserialize)]
struct Money {
    cents: u64,
}

#[derive(Event, Serialize, Deserialize)]
struct Paid {
    amount: Money,
}

fn main() {}
