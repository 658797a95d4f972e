use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(version = 2, upcast_from = Vec<u8>)]
struct ItemAdded { item: String }
fn main() {}
