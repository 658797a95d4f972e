//! A command returning the event enum, alone, in a `Vec`, an `Option` or an array.

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

    fn one(&self) -> Result<CounterEvent, String> {
        Ok(Reset.into())
    }
    fn many(&self) -> Result<Vec<CounterEvent>, String> {
        Ok(vec![Added(1).into(), Reset.into()])
    }
    fn maybe(&self) -> Result<Option<CounterEvent>, String> {
        Ok(Some(Added(3).into()))
    }
    fn pair(&self) -> Result<[CounterEvent; 2], String> {
        Ok([Added(1).into(), Added(2).into()])
    }
}

fn main() {
    Counter::given_nothing().when(|c| c.one()).then([Reset]);
    Counter::given_nothing()
        .when(|c| c.many())
        .then([CounterEvent::from(Added(1)), Reset.into()]);
    Counter::given_nothing().when(|c| c.maybe()).then([Added(3)]);
    Counter::given_nothing().when(|c| c.pair()).then([Added(1), Added(2)]);
}
