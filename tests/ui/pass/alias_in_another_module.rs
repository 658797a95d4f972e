//! A `type` alias elsewhere in the file named like an event of the aggregate is not taken
//! for it: the macro reads the aliases of the block's own module only.

use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
struct ItemAdded {
    item: String,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Added {
    count: u32,
}

mod names {
    #[allow(dead_code)]
    pub(crate) type Added = super::ItemAdded;
}

#[derive(Default)]
struct Cart {
    items: Vec<String>,
    count: u32,
}

#[aggregate(name = "cart")]
impl Cart {
    #[apply]
    fn item_added(&mut self, e: &ItemAdded) {
        self.items.push(e.item.clone());
    }

    #[apply]
    fn added(&mut self, e: &Added) {
        self.count += e.count;
    }
}

fn main() {
    let cart = Cart::given([CartEvent::from(Added { count: 2 })]);
    assert_eq!(cart.state().count, 2);
}
