//! An aggregate written by one `macro_rules!`, its state type included, whose events are
//! written by another, one per line of a table.

use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

macro_rules! events {
    ($($name:ident { $($field:ident: $ty:ty),* })*) => {
        $(
            #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
            pub struct $name {
                $(pub $field: $ty,)*
            }
        )*
    };
}

events! {
    ItemAdded { item: String, quantity: u32 }
    ItemRemoved { item: String }
    CheckedOut {}
}

// Each handler records the stored name of its event.
macro_rules! recording_aggregate {
    ($state:ident = $category:literal { $($handler:ident($event:ty)),* $(,)? }) => {
        #[derive(Default, Serialize, Deserialize, Debug)]
        pub struct $state {
            applied: Vec<String>,
        }

        #[aggregate(name = $category)]
        impl $state {
            $(
                #[apply]
                fn $handler(&mut self, event: &$event) {
                    let _ = event;
                    self.applied.push(<$event as Event>::NAME.to_owned());
                }
            )*

            pub fn applied(&self) -> &[String] {
                &self.applied
            }
        }
    };
}

recording_aggregate!(Cart = "cart" {
    added(ItemAdded),
    removed(ItemRemoved),
    checked_out(CheckedOut),
});

fn main() {
    let cart = Cart::given([
        CartEvent::from(ItemAdded { item: "book".into(), quantity: 1 }),
        CartEvent::from(ItemRemoved { item: "book".into() }),
        CartEvent::from(CheckedOut {}),
    ]);
    assert_eq!(cart.state().applied(), ["ItemAdded", "ItemRemoved", "CheckedOut"]);
}
