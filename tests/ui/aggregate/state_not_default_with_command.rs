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

struct Basket {
    items: Vec<String>,
}

#[aggregate(name = "basket")]
impl Basket {
    #[apply]
    fn added(&mut self, e: &ItemAdded) {
        self.items.push(e.item.clone());
    }

    // A command of a state without `Default`: the state's error is the only one.
    fn add<T: Into<String>>(&self, item: T) -> Result<ItemAdded, String>
    where
        T: Clone,
    {
        Ok(ItemAdded { item: item.into() })
    }
}

fn main() {}
