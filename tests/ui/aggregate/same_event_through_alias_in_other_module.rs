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

mod names {
    pub(crate) type Added = super::ItemAdded;
}

// The alias is in another module, which the macro does not resolve: the check of stored
// names reports it first.
#[aggregate(name = "cart")]
impl Cart {
    #[apply]
    fn added(&mut self, e: &ItemAdded) {
        self.items.push(e.item.clone());
    }

    #[apply]
    fn added_again(&mut self, _e: &names::Added) {}
}

fn main() {}
