//! The JSON Schema `#[derive(Event)]` registers for each event: derived from the struct and
//! its serde attributes, with no derive of the user's, and the escape hatches.

use esrs_core::catalog;
use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// A nested type of the user's: it derives `JsonSchema` itself.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, schemars::JsonSchema)]
struct Money {
    cents: u64,
    currency: String,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
struct InvoicePaid {
    invoice_id: String,
    amount: Money,
    #[serde(default)]
    note: String,
    reference: Option<String>,
    #[serde(skip)]
    cached: u8,
}

/// A bare container `#[serde(default)]`: schemars reads the defaults from the event's own
/// `Default`.
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(default)]
struct Configured {
    retries: u32,
}

impl Default for Configured {
    fn default() -> Self {
        Self { retries: 3 }
    }
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Moved(i32, i32);

mod as_text {
    pub(crate) fn serialize<S: serde::Serializer>(n: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&n.to_string())
    }
    pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A field whose shape serde's `with` writes: any value, by the user's choice.
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Measured {
    #[event(schema_any)]
    #[serde(with = "as_text", rename = "value")]
    amount: u64,
    unit: String,
}

/// A type without a schema: a field type from elsewhere, with no `JsonSchema`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Opaque(u8);

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(schema = false)]
struct Unschemed {
    opaque: Opaque,
}

fn schema_of(name: &str) -> Option<serde_json::Value> {
    catalog::program().current(name).unwrap().schema()
}

#[test]
fn a_schema_follows_serde_attributes() {
    let schema = schema_of("InvoicePaid").unwrap();
    assert_eq!(
        schema["properties"],
        json!({
            "invoiceId": { "type": "string" },
            "amount": { "$ref": "#/$defs/Money" },
            "note": { "type": "string", "default": "" },
            "reference": { "type": ["string", "null"] },
        })
    );
    assert_eq!(schema["required"], json!(["invoiceId", "amount"]));
    assert_eq!(schema["title"], "InvoicePaid");
    assert_eq!(
        schema["$defs"]["Money"]["required"],
        json!(["cents", "currency"])
    );
    assert!(
        schema.get("$schema").is_none(),
        "the lock names the dialect once"
    );
}

#[test]
fn a_container_default_comes_from_the_events_default() {
    let schema = schema_of("Configured").unwrap();
    assert_eq!(schema["properties"]["retries"]["default"], 3);
    assert!(schema.get("required").is_none(), "{schema}");
}

#[test]
fn tuple_structs_and_escape_hatches() {
    let moved = schema_of("Moved").unwrap();
    assert_eq!(moved["type"], "array");
    assert_eq!(moved["prefixItems"].as_array().unwrap().len(), 2);

    let measured = schema_of("Measured").unwrap();
    assert_eq!(measured["properties"]["value"], json!(true));
    assert_eq!(measured["required"], json!(["value", "unit"]));
    // The field still encodes through `with`: the schema's mirror is not the event.
    let event = Measured {
        amount: 7,
        unit: "kg".into(),
    };
    assert_eq!(
        serde_json::to_value(&event).unwrap(),
        json!({ "value": "7", "unit": "kg" })
    );

    assert_eq!(schema_of("Unschemed"), None);
}
