//! Events declared by `macro_rules!`, one per line of a table, with the struct name, a
//! field's name and type, the version, the stored name and the upcasters passed in as
//! fragments; the generated code's own bindings do not meet the fragments' hygiene.

use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

fn add_unit(mut v: serde_json::Value) -> Result<serde_json::Value, String> {
    v["unit"] = "piece".into();
    Ok(v)
}

macro_rules! events {
    ($($name:ident { $field:ident: $ty:ty } = $v:literal;)*) => {
        $(
            #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
            #[event(version = $v, oldest_version = $v)]
            pub struct $name {
                pub $field: $ty,
            }
        )*
    };
}

events! {
    ItemAdded { item: String } = 1;
    ItemCounted { count: u32 } = 3;
}

// The stored name, an alias, the version and both kinds of reader of older versions (the
// previous type and a payload upcaster), as fragments.
macro_rules! versioned {
    ($name:ident($stored:literal, $v:literal, $alias:literal) from $prev:ident, $old:literal with $with:path;
     $field:ident: $ty:ty, $unit:ident: $unit_ty:ty) => {
        #[derive(Event, Deserialize)]
        #[event(name = $stored, version = 1)]
        pub struct $prev {
            pub $field: $ty,
        }

        #[derive(Event, Serialize, Deserialize)]
        #[event(
            name = $stored,
            aliases = [$alias],
            version = $v,
            upcast_from = $prev,
            upcast(from = $old, to = $v, with = $with),
        )]
        pub struct $name {
            pub $field: $ty,
            pub $unit: $unit_ty,
        }

        impl From<$prev> for $name {
            fn from(old: $prev) -> Self {
                Self { $field: old.$field, $unit: <$unit_ty>::from("piece") }
            }
        }
    };
}

versioned! {
    Weighed("Weighed", 3, "Weight") from WeighedV1, 2 with add_unit;
    grams: u64, unit: String
}

// Personal data: the generated `personal_fields` reads the fields through `self`.
macro_rules! personal_event {
    ($name:ident { $subject:ident: $subject_ty:ty, $secret:ident: $secret_ty:ty }) => {
        #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
        pub struct $name {
            #[event(subject)]
            pub $subject: $subject_ty,
            #[event(personal)]
            pub $secret: Personal<$secret_ty>,
        }
    };
}

personal_event!(MemberJoined { member: String, email: String });

fn main() {
    assert_eq!((<ItemAdded as Event>::NAME, <ItemAdded as Event>::VERSION), ("ItemAdded", 1));
    assert_eq!(<ItemCounted as Event>::VERSION, 3);
    let counted = <ItemCounted as Event>::decode(3, r#"{"count":2}"#).unwrap();
    assert_eq!(counted, ItemCounted { count: 2 });

    assert_eq!((<Weighed as Event>::NAME, <Weighed as Event>::ALIASES), ("Weighed", &["Weight"][..]));
    assert_eq!(<Weighed as Event>::known_versions(), [1, 2, 3]);
    let from_v1 = <Weighed as Event>::decode(1, r#"{"grams":5}"#).unwrap();
    let from_v2 = <Weighed as Event>::decode(2, r#"{"grams":5}"#).unwrap();
    assert_eq!((from_v1.unit.as_str(), from_v2.unit.as_str()), ("piece", "piece"));
    assert!(<Weighed as Event>::decode(4, "{}").is_err());

    let joined = MemberJoined { member: "m-1".into(), email: Personal::new("a@b.c".into()) };
    assert_eq!(<MemberJoined as Event>::personal_fields(&joined).len(), 1);
}
