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

#[derive(Default)]
struct Pile<T> {
    items: Vec<T>,
}

#[aggregate(name = "pile")]
impl<T: Default + Send + Sync + 'static> Pile<T> {
    #[apply]
    fn added(&mut self, e: &ItemAdded) {
        let _ = e;
    }
}

fn main() {}
