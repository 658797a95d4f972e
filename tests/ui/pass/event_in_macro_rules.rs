//! An event declared by a `macro_rules!`, whose field type is named through `$crate`.

use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, schemars::JsonSchema)]
pub struct Money {
    cents: u64,
}

macro_rules! payment_event {
    () => {
        #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
        pub struct Paid {
            amount: $crate::Money,
            reference: Option<String>,
        }
    };
}

payment_event!();

fn main() {
    let paid = Paid {
        amount: Money { cents: 100 },
        reference: None,
    };
    assert_eq!(<Paid as Event>::NAME, "Paid");
    let _ = paid;
}
