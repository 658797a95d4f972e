//! Generated code is clean under strict lints in the user's crate.

#![deny(unused_qualifications, missing_docs, missing_debug_implementations, unreachable_pub)]
#![deny(warnings, unused_results)]
#![forbid(unsafe_code)]
#![no_implicit_prelude]

use ::esrs_core::{Event, aggregate};
use ::serde::{Deserialize, Serialize};
use ::std::clone::Clone;
use ::std::default::Default;
use ::std::fmt::Debug;
use ::std::string::String;
use ::std::vec::Vec;

/// An item was added.
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(version = 2, upcast_from = ItemAddedV1)]
pub struct ItemAdded {
    /// The item.
    pub item: String,
    /// How many.
    pub count: u32,
}

/// Version 1.
#[derive(Event, Deserialize, Debug)]
#[event(name = "ItemAdded")]
pub struct ItemAddedV1 {
    /// The item.
    pub item: String,
}

impl ::std::convert::From<ItemAddedV1> for ItemAdded {
    fn from(v1: ItemAddedV1) -> Self {
        Self {
            item: v1.item,
            count: 1,
        }
    }
}

/// The state.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Cart {
    items: Vec<String>,
}

/// A refusal.
#[derive(Debug)]
pub struct Refused;

#[aggregate(name = "cart", snapshot_every = 10)]
impl Cart {
    #[apply]
    fn added(&mut self, e: &ItemAdded) {
        self.items.push(Clone::clone(&e.item));
    }

    /// A command.
    pub fn add(&self, item: String) -> ::std::result::Result<ItemAdded, Refused> {
        ::std::result::Result::Ok(ItemAdded { item, count: 1 })
    }
}

fn main() {
    let _ = Cart::default().add(String::new());
}
