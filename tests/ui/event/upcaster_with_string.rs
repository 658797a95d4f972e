use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(version = 2, upcast(from = 1, with = "up"))]
struct ItemAdded { item: String }
fn main() {}
