use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
struct ItemAdded {
    item: String,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
struct CheckedOut;

#[derive(Default)]
struct Cart {
    items: Vec<String>,
}

#[derive(Event, Serialize, Deserialize, Clone, PartialEq)]
struct Scanned {
    code: String,
}

#[aggregate(name = "cart")]
impl Cart {
    #[apply]
    fn added(&mut self, _e: &Scanned) {}
}

fn main() {}
