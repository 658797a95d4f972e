use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

fn from_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(serde::de::Error::custom)
}

#[derive(Event, Serialize, Deserialize)]
struct ItemAdded {
    #[serde(deserialize_with = "from_text")]
    count: u32,
}

fn main() {}
