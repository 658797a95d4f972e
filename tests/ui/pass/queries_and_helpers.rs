//! Methods that are not commands: queries returning other types (with lifetimes, `Self`, `impl Trait`), and a `#[helper]` the handlers call.

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

    #[helper]
    fn cap(&mut self) {
        self.0 = self.0.min(100);
    }
    fn total(&self) -> u32 {
        self.0
    }
    fn digits(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.to_string().into_bytes().into_iter().map(|b| u32::from(b - b'0'))
    }
    fn copy(&self) -> Result<Self, String> {
        Ok(Self(self.0))
    }
    fn label<'a>(&'a self, s: &'a str) -> Result<&'a str, String> {
        Ok(s)
    }
    fn into_total(self) -> u32 {
        self.0
    }
}

fn main() {
    let mut c = Counter::default();
    c.apply(&CounterEvent::Added(Added(12)));
    c.cap();
    assert_eq!(c.total(), 12);
    assert_eq!(c.digits().collect::<Vec<_>>(), [1, 2]);
    assert_eq!(c.copy().unwrap().label("x"), Ok("x"));
    assert_eq!(c.into_total(), 12);
}
