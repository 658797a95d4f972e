use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(version = 2 3)]
struct ItemAdded { item: String }
fn main() {}
