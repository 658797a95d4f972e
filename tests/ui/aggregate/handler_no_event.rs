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

#[aggregate(name = "cart")]
impl Cart {
    #[apply]
    fn cleared(&mut self) {
        self.items.clear();
    }
}

fn main() {}
