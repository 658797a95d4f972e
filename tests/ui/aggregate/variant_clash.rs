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

mod other {
    use esrs_core::prelude::*;
    use serde::{Deserialize, Serialize};

    #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    #[event(name = "other.ItemAdded")]
    pub struct ItemAdded;
}

#[aggregate(name = "cart")]
impl Cart {
    #[apply]
    fn added(&mut self, e: &ItemAdded) {
        self.items.push(e.item.clone());
    }

    #[apply]
    fn other_added(&mut self, _: &other::ItemAdded) {}
}

fn main() {}
