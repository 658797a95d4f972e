//! Decoding stored events through `#[derive(Event)]`: versions, upcaster chains, payload
//! upcasters and every typed error.

#![deny(unused_qualifications, missing_docs)]

use esrs_core::DecodeError;
use esrs_core::catalog::EventInfo;
use esrs_core::error::ErrorChain;
use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

/// Version 1: the item was a bare name.
#[derive(Event, Deserialize, Debug, PartialEq)]
#[event(name = "ItemPriced", version = 1)]
pub struct ItemPricedV1 {
    /// The item.
    pub item: String,
}

/// Version 2: a price in cents was added.
#[derive(Event, Deserialize, Debug, PartialEq)]
#[event(name = "ItemPriced", version = 2, upcast_from = ItemPricedV1)]
pub struct ItemPricedV2 {
    /// The item.
    pub item: String,
    /// The price in cents.
    pub cents: u64,
}

impl From<ItemPricedV1> for ItemPricedV2 {
    fn from(v1: ItemPricedV1) -> Self {
        Self {
            item: v1.item,
            cents: 0,
        }
    }
}

/// Version 3: a currency was added.
#[derive(Event, Serialize, Deserialize, Debug, PartialEq, Clone)]
#[event(version = 3, upcast_from = ItemPricedV2)]
pub struct ItemPriced {
    /// The item.
    pub item: String,
    /// The price in cents.
    pub cents: u64,
    /// The currency.
    pub currency: String,
}

impl From<ItemPricedV2> for ItemPriced {
    fn from(v2: ItemPricedV2) -> Self {
        Self {
            item: v2.item,
            cents: v2.cents,
            currency: "EUR".into(),
        }
    }
}

#[test]
fn a_typed_chain_reads_every_older_version() {
    assert_eq!(<ItemPriced as Event>::NAME, "ItemPriced");
    assert_eq!(<ItemPriced as Event>::known_versions(), vec![1, 2, 3]);
    let v1 = ItemPriced::decode(1, r#"{"item":"book"}"#).unwrap();
    assert_eq!(
        v1,
        ItemPriced {
            item: "book".into(),
            cents: 0,
            currency: "EUR".into()
        }
    );
    let v2 = ItemPriced::decode(2, r#"{"item":"pen","cents":150}"#).unwrap();
    assert_eq!(
        v2,
        ItemPriced {
            item: "pen".into(),
            cents: 150,
            currency: "EUR".into()
        }
    );
    let v3 = ItemPriced::decode(3, r#"{"item":"ink","cents":5,"currency":"USD"}"#).unwrap();
    assert_eq!(
        v3,
        ItemPriced {
            item: "ink".into(),
            cents: 5,
            currency: "USD".into()
        }
    );
}

#[test]
fn a_future_version_is_a_typed_error_naming_the_known_versions() {
    let err = ItemPriced::decode(4, "{}").unwrap_err();
    match err {
        DecodeError::UnknownVersion {
            name,
            version,
            known,
        } => {
            assert_eq!((name, version, known), ("ItemPriced", 4, vec![1, 2, 3]));
        }
        other => panic!("expected UnknownVersion, got {other:?}"),
    }
    // Below the oldest version too, the error lists every version the type decodes.
    let err = ItemPriced::decode(0, "{}").unwrap_err();
    assert!(
        matches!(&err, DecodeError::UnknownVersion { version: 0, known, .. } if known == &[1, 2, 3]),
        "{err:?}"
    );
}

#[test]
fn a_malformed_payload_is_a_typed_error_at_its_stored_version() {
    let err = ItemPriced::decode(1, r#"{"name":"book"}"#).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::Malformed {
                name: "ItemPriced",
                version: 1,
                ..
            }
        ),
        "{err:?}"
    );
    let err = ItemPriced::decode(3, "[1]").unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::Malformed {
                name: "ItemPriced",
                version: 3,
                ..
            }
        ),
        "{err:?}"
    );
}

/// Renames `qty` to `quantity` (version 1 to 2).
fn rename_qty(mut value: serde_json::Value) -> Result<serde_json::Value, String> {
    let object = value.as_object_mut().ok_or("expected an object")?;
    let qty = object.remove("qty").ok_or("missing `qty`")?;
    object.insert("quantity".into(), qty);
    Ok(value)
}

/// Adds a default unit (version 2 to 3).
fn add_unit(mut value: serde_json::Value) -> Result<serde_json::Value, std::convert::Infallible> {
    if let Some(object) = value.as_object_mut() {
        object.entry("unit").or_insert("piece".into());
    }
    Ok(value)
}

/// Stock counted, with payload-level upcasters from versions 1 and 2.
#[derive(Event, Serialize, Deserialize, Debug, PartialEq)]
#[event(
    version = 3,
    upcast(from = 1, with = rename_qty),
    upcast(from = 2, with = add_unit)
)]
pub struct StockCounted {
    /// How many.
    pub quantity: u32,
    /// Of what unit.
    pub unit: String,
}

#[test]
fn payload_upcasters_run_in_order() {
    assert_eq!(<StockCounted as Event>::known_versions(), vec![1, 2, 3]);
    let from_v1 = StockCounted::decode(1, r#"{"qty":4}"#).unwrap();
    assert_eq!(
        from_v1,
        StockCounted {
            quantity: 4,
            unit: "piece".into()
        }
    );
    let from_v2 = StockCounted::decode(2, r#"{"quantity":5,"unit":"box"}"#).unwrap();
    assert_eq!(
        from_v2,
        StockCounted {
            quantity: 5,
            unit: "box".into()
        }
    );
}

#[test]
fn a_refusing_payload_upcaster_is_a_typed_error() {
    let err = StockCounted::decode(1, r#"{"quantity":4}"#).unwrap_err();
    match err {
        DecodeError::Upcast {
            name,
            from,
            message,
        } => {
            assert_eq!(
                (name, from, message.as_str()),
                ("StockCounted", 1, "missing `qty`")
            );
        }
        other => panic!("expected Upcast, got {other:?}"),
    }
    let err = StockCounted::decode(1, r#""four""#).unwrap_err();
    assert!(
        matches!(&err, DecodeError::Upcast { from: 1, message, .. } if message == "expected an object"),
        "{err:?}"
    );
}

fn v1_to_v3(mut value: serde_json::Value) -> Result<serde_json::Value, String> {
    value["unit"] = "piece".into();
    Ok(value)
}

/// Skips a version: stored version 1 is upcast straight to 3; version 2 never existed.
#[derive(Event, Serialize, Deserialize, Debug, PartialEq)]
#[event(name = "Shelved", version = 3, upcast(from = 1, to = 3, with = v1_to_v3), skipped_versions = [2])]
pub struct Shelved {
    /// How many.
    pub quantity: u32,
    /// Of what unit.
    pub unit: String,
}

#[test]
fn a_version_with_no_route_is_unknown() {
    assert_eq!(<Shelved as Event>::known_versions(), vec![1, 3]);
    let ok = Shelved::decode(1, r#"{"quantity":1}"#).unwrap();
    assert_eq!(ok.unit, "piece");
    let err = Shelved::decode(2, r#"{"quantity":1}"#).unwrap_err();
    assert!(
        matches!(&err, DecodeError::UnknownVersion { name: "Shelved", version: 2, known } if known == &[1, 3]),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("version 2"),
        "{}",
        ErrorChain::new(&err)
    );
}

mod nested {
    pub(crate) mod deeper {
        use esrs_core::Event;
        use serde::{Deserialize, Serialize};

        /// A unit event in a nested module.
        #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
        pub(crate) struct Pinged;

        /// A tuple event in a nested module.
        #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
        #[event(name = "nested.Ponged")]
        pub(crate) struct Ponged(pub u8, pub String);
    }
}

#[test]
fn unit_and_tuple_structs_are_events() {
    use nested::deeper::{Pinged, Ponged};
    assert_eq!(Pinged::decode(1, "null").unwrap(), Pinged);
    assert_eq!(
        Ponged::decode(1, r#"[7,"x"]"#).unwrap(),
        Ponged(7, "x".into())
    );
    assert_eq!(<Ponged as Event>::NAME, "nested.Ponged");
    assert_eq!(<Pinged as Event>::VERSION, 1);
}

#[test]
fn the_catalog_lists_every_event_with_its_older_versions() {
    let catalog = esrs_core::catalog::program();
    let priced: Vec<&EventInfo> = catalog.events_named("ItemPriced").collect();
    assert_eq!(priced.len(), 3, "{priced:?}");
    let current = priced.iter().find(|e| e.version() == 3).unwrap();
    assert!(
        current.rust_type().ends_with("::ItemPriced"),
        "{}",
        current.rust_type()
    );
    assert_eq!(current.older_versions(), vec![1, 2]);
    assert!(current.upcast_from().unwrap().ends_with("::ItemPricedV2"));
    let ponged = catalog.events_named("nested.Ponged").next().unwrap();
    assert!(ponged.rust_type().ends_with("nested::deeper::Ponged"));
    esrs_core::catalog::check().expect("the versions of ItemPriced form one chain");
}
