use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event("ItemAdded")]
struct ItemAdded { item: String }
fn main() {}
