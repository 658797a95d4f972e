use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

mod as_text {
    pub fn serialize<S: serde::Serializer>(n: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&n.to_string())
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

// The shape of `amount` is written by `as_text`, not by `u64`.
#[derive(Event, Serialize, Deserialize)]
struct Paid {
    #[serde(with = "as_text")]
    amount: u64,
}

fn main() {}
