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

type Added = ItemAdded;
type Appended = Added;

#[aggregate(name = "cart")]
impl Cart {
    #[apply]
    fn appended(&mut self, e: &Appended) {
        self.items.push(e.item.clone());
    }

    #[apply]
    fn added(&mut self, _e: &ItemAdded) {}
}

fn main() {}
