//! An event whose older versions are known to be gone: `oldest_version`.

use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Added(u32);

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Reset;

#[derive(Default)]
struct Counter(u32);

#[derive(Event, Serialize, Deserialize, Debug, PartialEq)]
#[event(version = 3, oldest_version = 3)]
struct Renamed {
    to: String,
}

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
}

fn main() {
    assert_eq!(<Renamed as Event>::known_versions(), [3]);
    assert!(Renamed::decode(2, "{}").is_err());
}
