//! A command returning at most one event: `Result<Option<Reset>, _>`.

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

    fn reset_if_positive(&self) -> Result<Option<Reset>, String> {
        Ok((self.0 > 0).then_some(Reset))
    }
}

fn main() {
    Counter::given([Added(1)]).when(|c| c.reset_if_positive()).then([Reset]);
    Counter::given_nothing().when(|c| c.reset_if_positive()).then(Vec::<Reset>::new());
}
