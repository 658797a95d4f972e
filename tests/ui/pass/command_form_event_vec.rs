//! A command returning several events of one type: `Result<Vec<Added>, _>`.

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

    fn add_each(&self, ns: &[u32]) -> Result<Vec<Added>, String> {
        Ok(ns.iter().copied().map(Added).collect())
    }
}

fn main() {
    Counter::given_nothing().when(|c| c.add_each(&[1, 2])).then([Added(1), Added(2)]);
}
