use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
struct ItemAdded {
    item: String,
}

#[derive(Default)]
struct Cart {
    items: Vec<String>,
}

#[aggregate(name = "", snapshot_every = 0, colour = "blue")]
impl Cart {
    #[apply]
    fn added(&self, e: ItemAdded) -> bool {
        let _ = e;
        true
    }
}

fn main() {}
