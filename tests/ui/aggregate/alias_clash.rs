use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
struct ItemAdded {
    item: String,
}

// Its former name is the stored name of another event of the aggregate.
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "ProductAdded", aliases = ["ItemAdded"])]
struct ProductAdded {
    sku: String,
}

#[derive(Default)]
struct Cart {
    items: Vec<String>,
}

#[aggregate(name = "cart")]
impl Cart {
    #[apply]
    fn added(&mut self, e: &ItemAdded) {
        self.items.push(e.item.clone());
    }

    #[apply]
    fn product_added(&mut self, e: &ProductAdded) {
        self.items.push(e.sku.clone());
    }
}

fn main() {}
