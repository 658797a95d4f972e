//! The program-wide catalog: every derived event and aggregate is listed, and
//! `catalog::check` finds names claimed twice across aggregates, which no single macro
//! invocation can see.

use esrs_core::catalog::{self, CatalogConflict};
use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

mod shipping {
    use super::*;

    /// Stored as "Shipped".
    #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    pub(crate) struct Shipped {
        pub(crate) carrier: String,
    }

    #[derive(Default)]
    pub(crate) struct Parcel;

    #[aggregate(name = "parcel")]
    impl Parcel {
        #[apply]
        fn shipped(&mut self, _: &Shipped) {}
    }
}

mod orders {
    use super::*;

    /// Also stored as "Shipped", by an unrelated type of another aggregate.
    #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    pub(crate) struct Shipped {
        pub(crate) order: u64,
    }

    #[derive(Default)]
    pub(crate) struct Order;

    // Same stream category as `billing::Invoice`.
    #[aggregate(name = "order")]
    impl Order {
        #[apply]
        fn shipped(&mut self, _: &Shipped) {}
    }
}

mod billing {
    use super::*;

    #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    #[event(name = "Billed")]
    pub(crate) struct BilledV1 {
        pub(crate) cents: u64,
    }

    /// The current version of "Billed": shares its name with its older version, which is fine.
    #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    #[event(version = 2, upcast_from = BilledV1)]
    pub(crate) struct Billed {
        pub(crate) cents: u64,
        pub(crate) currency: String,
    }

    impl From<BilledV1> for Billed {
        fn from(v1: BilledV1) -> Self {
            Self {
                cents: v1.cents,
                currency: "EUR".into(),
            }
        }
    }

    /// A second branch from the same old version: two current versions of one name.
    #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    #[event(name = "Billed", version = 2, upcast_from = BilledV1)]
    pub(crate) struct BilledAgain {
        pub(crate) cents: u64,
    }

    impl From<BilledV1> for BilledAgain {
        fn from(v1: BilledV1) -> Self {
            Self { cents: v1.cents }
        }
    }

    #[derive(Default)]
    pub(crate) struct Invoice;

    #[aggregate(name = "order")]
    impl Invoice {
        #[apply]
        fn billed(&mut self, _: &Billed) {}
    }

    #[derive(Default)]
    pub(crate) struct Ledger;

    #[aggregate(name = "ledger")]
    impl Ledger {
        #[apply]
        fn billed(&mut self, _: &BilledAgain) {}
    }
}

mod renames {
    use super::*;

    /// Claims "Shipped", the stored name of two other events, as its former name.
    #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    #[event(name = "Dispatched", aliases = ["Shipped"])]
    pub(crate) struct Dispatched {
        pub(crate) carrier: String,
    }
}

fn short(types: &[&str]) -> Vec<String> {
    types
        .iter()
        .map(|t| {
            t.rsplit("::")
                .take(2)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("::")
        })
        .collect()
}

#[test]
fn check_catalog_reports_every_name_claimed_twice() {
    let error = catalog::check().unwrap_err();
    let found: Vec<(&str, &str, Vec<String>)> = error
        .conflicts
        .iter()
        .map(|c| match c {
            CatalogConflict::EventName { name, types } => ("event", *name, short(types)),
            CatalogConflict::AggregateName { name, types } => ("aggregate", *name, short(types)),
            CatalogConflict::Alias { alias, types } => ("alias", *alias, short(types)),
            other => panic!("unexpected conflict {other:?}"),
        })
        .collect();
    assert_eq!(
        found,
        [
            (
                "event",
                "Billed",
                vec![
                    "billing::BilledV1".into(),
                    "billing::Billed".into(),
                    "billing::BilledAgain".into()
                ]
            ),
            (
                "event",
                "Shipped",
                vec!["orders::Shipped".to_owned(), "shipping::Shipped".into()]
            ),
            (
                "alias",
                "Shipped",
                vec![
                    "renames::Dispatched".to_owned(),
                    "orders::Shipped".into(),
                    "shipping::Shipped".into()
                ]
            ),
            (
                "aggregate",
                "order",
                vec!["billing::Invoice".into(), "orders::Order".into()]
            ),
        ]
    );
    let message = error.to_string();
    assert!(
        message.contains("`Shipped` is used by unrelated types"),
        "{message}"
    );
    assert!(message.contains("#[aggregate(name = \"…\")]"), "{message}");
}

#[test]
fn the_catalog_lists_every_event_and_aggregate() {
    let catalog = esrs_core::catalog::program();
    let names: Vec<(&str, u32)> = catalog
        .events()
        .iter()
        .map(|e| (e.name(), e.version()))
        .collect();
    assert_eq!(
        names,
        [
            ("Billed", 1),
            ("Billed", 2),
            ("Billed", 2),
            ("Dispatched", 1),
            ("Shipped", 1),
            ("Shipped", 1)
        ]
    );
    let aggregates: Vec<&str> = catalog.aggregates().iter().map(|a| a.name()).collect();
    assert_eq!(aggregates, ["ledger", "order", "order", "parcel"]);
    let billed = catalog
        .events_named("Billed")
        .find(|e| e.rust_type().ends_with("::Billed"))
        .unwrap();
    assert_eq!(billed.older_versions(), [1]);
    assert_eq!(billed.known_versions(), [1, 2]);
}

#[test]
fn the_lock_check_refuses_names_claimed_twice() {
    // An empty lock: whatever it holds, names claimed twice in the program are refused.
    let path = std::env::temp_dir().join(format!("esrs-conflicts-{}.json", std::process::id()));
    std::fs::write(
        &path,
        r#"{ "format": 1, "schema_dialect": "https://json-schema.org/draft/2020-12/schema", "aggregates": {}, "events": {} }"#,
    )
    .unwrap();
    let result = catalog::verify_lock(&path);
    let written = catalog::write_lock(&path);
    std::fs::remove_file(&path).unwrap();
    let Err(catalog::LockError::Breaking { changes, .. }) = result else {
        panic!("{result:?}");
    };
    let messages: Vec<String> = changes
        .iter()
        .map(|c| c.to_string().replace("macro_catalog::", ""))
        .collect();
    assert_eq!(
        messages,
        [
            "the stored event name `Billed` is used by unrelated types [\"billing::BilledV1\", \"billing::Billed\", \"billing::BilledAgain\"]; give each its own #[event(name = \"…\")], or link the versions of one event with #[event(upcast_from = …)]",
            "the stored event name `Shipped` is used by unrelated types [\"orders::Shipped\", \"shipping::Shipped\"]; give each its own #[event(name = \"…\")], or link the versions of one event with #[event(upcast_from = …)]",
            "the alias `Shipped` is claimed by [\"renames::Dispatched\", \"orders::Shipped\", \"shipping::Shipped\"]; an alias is a former name of one event, used by no other: remove it from all but one #[event(aliases = […])]",
            "the aggregate name `order` is used by [\"billing::Invoice\", \"orders::Order\"]; give each its own #[aggregate(name = \"…\")]",
        ]
    );
    assert!(
        matches!(written, Err(catalog::LockError::Breaking { .. })),
        "a lock cannot hold names claimed twice: {written:?}"
    );
}
