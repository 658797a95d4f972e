//! A generic command over the aggregate's own events.

use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Added(u32);

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Reset;

#[derive(Default)]
struct Counter(u32);

use esrs_core::IntoEvents;

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

    fn emit<E: IntoEvents<CounterEvent>>(&self, event: E) -> Result<E, String> {
        Ok(event)
    }
}

fn main() {
    Counter::given_nothing().when(|c| c.emit(Added(5))).then([Added(5)]);
    Counter::given_nothing().when(|c| c.emit(vec![Reset])).then([Reset]);
}
