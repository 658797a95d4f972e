//! Typed chains (with paths), payload upcasters with and without `to`, and both mixed.

use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

mod old {
    use esrs_core::Event;
    use serde::Deserialize;

    #[derive(Event, Deserialize)]
    #[event(name = "Priced", version = 1)]
    pub struct PricedV1 {
        pub cents: u64,
    }

    #[derive(Event, Deserialize)]
    #[event(name = "Priced", version = 2, upcast_from = PricedV1)]
    pub struct PricedV2 {
        pub cents: u64,
        pub currency: String,
    }

    impl From<PricedV1> for PricedV2 {
        fn from(v1: PricedV1) -> Self {
            Self { cents: v1.cents, currency: "EUR".into() }
        }
    }
}

mod upcasters {
    pub fn add_tax(
        mut v: serde_json::Value,
    ) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
        v["tax"] = 0.into();
        Ok(v)
    }
}

#[derive(Event, Serialize, Deserialize)]
#[event(version = 4, upcast_from = old::PricedV2, upcast(from = 3, with = upcasters::add_tax))]
pub struct Priced {
    pub cents: u64,
    pub currency: String,
    pub tax: u64,
}

impl From<old::PricedV2> for Priced {
    fn from(v2: old::PricedV2) -> Self {
        Self { cents: v2.cents, currency: v2.currency, tax: 0 }
    }
}

fn to_v3(v: serde_json::Value) -> Result<serde_json::Value, String> {
    Ok(serde_json::json!({ "n": v, "unit": "piece" }))
}

#[derive(Event, Serialize, Deserialize)]
#[event(version = 3, upcast(from = 1, to = 3, with = to_v3), upcast(from = 2, with = to_v3))]
pub struct Counted {
    pub n: serde_json::Value,
    pub unit: String,
}

// Stored names are any text without whitespace or control characters, braces included.
#[derive(Event, Deserialize)]
#[event(name = "odd{name}", version = 1)]
pub struct OddV1;

#[derive(Event, Deserialize)]
#[event(name = "odd{name}", version = 2, upcast_from = OddV1)]
pub struct Odd;

impl From<OddV1> for Odd {
    fn from(_: OddV1) -> Self {
        Self
    }
}

// An upcaster named like the generated `decode`'s parameter: the generated code's bindings
// do not shadow the user's items.
fn payload(v: serde_json::Value) -> Result<serde_json::Value, String> {
    Ok(serde_json::json!({ "text": v["t"] }))
}

#[derive(Event, Serialize, Deserialize)]
#[event(version = 2, upcast(from = 1, with = payload))]
pub struct Noted {
    pub text: String,
}

fn main() {
    assert_eq!(<Odd as Event>::known_versions(), [1, 2]);
    assert_eq!(<Priced as Event>::known_versions(), [1, 2, 3, 4]);
    assert_eq!(<Counted as Event>::known_versions(), [1, 2, 3]);

    // Each older version through its reader: the typed chain, then the payload upcaster.
    let v1 = <Priced as Event>::decode(1, r#"{"cents":5}"#).unwrap();
    assert_eq!((v1.cents, v1.currency.as_str(), v1.tax), (5, "EUR", 0));
    let v3 = <Priced as Event>::decode(3, r#"{"cents":5,"currency":"USD"}"#).unwrap();
    assert_eq!((v3.currency.as_str(), v3.tax), ("USD", 0));
    assert_eq!(<Noted as Event>::decode(1, r#"{"t":"x"}"#).unwrap().text, "x");
}
