//! Every event and aggregate of the examples is in the program's catalog, and no stored
//! name or stream category is claimed twice.

// Linking the library is what registers its types.
use esrs_examples as _;

#[test]
fn the_examples_catalog_is_consistent() {
    esrs_core::catalog::check().expect("stored names and categories are unique");
    let catalog = esrs_core::catalog::program();

    let aggregates: Vec<_> = catalog.aggregates().iter().map(|a| a.name()).collect();
    assert_eq!(
        aggregates,
        [
            "account", "cart", "invoice", "loyalty", "member", "orders", "player"
        ]
    );

    let events: Vec<_> = catalog
        .events()
        .iter()
        .map(|e| (e.name(), e.version()))
        .collect();
    assert_eq!(
        events,
        [
            ("BookBorrowed", 1),
            ("BookReturned", 1),
            ("CartCheckedOut", 1),
            ("Deposited", 1),
            ("InvoiceIssued", 1),
            ("ItemAdded", 1),
            ("ItemRemoved", 1),
            ("ItemRemoved", 2),
            ("MemberRegistered", 1),
            ("OrderPlaced", 1),
            ("PlayerScored", 1),
            ("PointsAdded", 1),
            ("Withdrawn", 1),
        ]
    );
    let removed: Vec<_> = catalog.events_named("ItemRemoved").collect();
    assert_eq!(removed[1].known_versions(), [1, 2]);
}
