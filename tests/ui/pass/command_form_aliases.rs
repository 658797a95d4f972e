//! Commands whose `Result` or event is named through an alias or a renamed import: the check follows the type.

use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Added(u32);

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Reset;

#[derive(Default)]
struct Counter(u32);

type Outcome<T> = Result<T, String>;
type Zero = Reset;
use std::result::Result as Refusable;

#[aggregate(name = "counter")]
impl Counter {
    #[apply]
    fn added(&mut self, e: &Added) {
        self.0 += e.0;
    }

    #[apply]
    fn reset(&mut self, _: &Reset) {
        self.0 = 0;
    }

    fn add(&self) -> Outcome<Added> {
        Ok(Added(1))
    }
    fn zero(&self) -> Refusable<Zero, String> {
        Ok(Reset)
    }
}

fn main() {
    Counter::given_nothing().when(|c| c.add()).then([Added(1)]);
    Counter::given([Added(1)]).when(|c| c.zero()).then([Reset]);
}
