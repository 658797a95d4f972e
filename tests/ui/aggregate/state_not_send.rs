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

#[derive(Default)]
struct Shared {
    items: std::rc::Rc<Vec<String>>,
}

#[aggregate(name = "shared")]
impl Shared {
    #[apply]
    fn added(&mut self, _e: &ItemAdded) {}
}

#[aggregate(name = "cart")]
impl Cart {
    #[apply]
    fn added(&mut self, e: &ItemAdded) {
        self.items.push(e.item.clone());
    }
}

fn main() {}
