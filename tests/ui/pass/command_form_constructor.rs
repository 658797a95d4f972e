//! An associated function without `self` returning events, run as the command of a new stream.

use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Added(u32);

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Reset;

#[derive(Default)]
struct Counter(u32);

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

    fn start(n: u32) -> Result<Added, String> {
        Ok(Added(n))
    }
}

fn main() {
    Counter::given_nothing().when(|_| Counter::start(4)).then([Added(4)]);
}
