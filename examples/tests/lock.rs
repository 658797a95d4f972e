//! The examples' events against their committed lock file, the CI gate of the event catalog
//! as a team adds it to its own crate; and each rule of the check, applied to a copy of that
//! lock: every breaking change is refused with its exact message, every compatible one
//! passes.

use esrs_core::catalog::{self, Lock, LockError, LockStatus};
use serde_json::{Value, json};

// Linking the library is what registers its types.
use esrs_examples as _;

const LOCK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/events.lock.json");

#[test]
fn events_match_the_lock() {
    esrs_core::catalog::verify_lock(concat!(env!("CARGO_MANIFEST_DIR"), "/events.lock.json"))
        .unwrap();
}

/// The committed lock, as JSON.
fn committed() -> Value {
    serde_json::from_str(&std::fs::read_to_string(LOCK).unwrap()).unwrap()
}

/// The running program's lock, as JSON.
fn program() -> Value {
    let (lock, conflicts) = Lock::program();
    assert!(conflicts.is_none(), "{conflicts:?}");
    serde_json::to_value(lock).unwrap()
}

/// The check of `program` against `locked`: the breaking changes' messages, and the
/// compatible changes.
fn check(locked: &Value, program: &Value) -> (Vec<String>, Vec<String>) {
    let locked: Lock = serde_json::from_value(locked.clone()).unwrap();
    let program: Lock = serde_json::from_value(program.clone()).unwrap();
    let (breaking, compatible) = locked.compare(&program);
    (
        breaking.iter().map(ToString::to_string).collect(),
        compatible,
    )
}

/// `check` of a program changed by `change` against the committed lock, which must refuse
/// it with exactly `expected`.
fn refused(change: impl FnOnce(&mut Value), expected: &[&str]) {
    let mut changed = program();
    change(&mut changed);
    let (breaking, _) = check(&committed(), &changed);
    assert_eq!(breaking, expected);
}

/// `check` of a program changed by `change`, which must pass with `expected` as its
/// compatible changes.
fn accepted(change: impl FnOnce(&mut Value), expected: &[&str]) {
    let mut changed = program();
    change(&mut changed);
    let (breaking, compatible) = check(&committed(), &changed);
    assert_eq!(breaking, Vec::<String>::new());
    assert_eq!(compatible, expected);
}

fn at<'a>(value: &'a mut Value, pointer: &str) -> &'a mut Value {
    value
        .pointer_mut(pointer)
        .unwrap_or_else(|| panic!("{pointer} is in the lock"))
}

/// Sets the member at `pointer`, which may be absent (an empty list is not written).
fn set(value: &mut Value, pointer: &str, member: Value) {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    at(value, parent)
        .as_object_mut()
        .unwrap()
        .insert(key.to_owned(), member);
}

fn remove(value: &mut Value, pointer: &str) {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    at(value, parent)
        .as_object_mut()
        .unwrap()
        .remove(key)
        .unwrap();
}

const ITEM_ADDED_V1: &str = "/events/ItemAdded/versions/1/schema";

#[test]
fn the_program_is_the_committed_lock() {
    assert_eq!(check(&committed(), &program()), (vec![], vec![]));
    assert_eq!(
        Lock::program().0.to_json(),
        std::fs::read_to_string(LOCK).unwrap()
    );
}

#[test]
fn a_removed_field_is_refused() {
    refused(
        |p| {
            remove(p, &format!("{ITEM_ADDED_V1}/properties/item"));
            *at(p, &format!("{ITEM_ADDED_V1}/required")) = json!([]);
        },
        &[
            "event `ItemAdded` version 1: the field `item` was removed, but stored events of version 1 have it and their readers expect it; put the field back (an `Option` if it may be absent), or write the new shape as a new version with an upcaster from version 1",
        ],
    );
}

#[test]
fn a_changed_field_type_is_refused() {
    refused(
        |p| {
            *at(p, &format!("{ITEM_ADDED_V1}/properties/item")) =
                json!({ "type": "integer", "format": "uint32", "minimum": 0 })
        },
        &[
            "event `ItemAdded` version 1: the field `item` changed type from string to integer (uint32), but stored events of version 1 hold string; keep it as it was, and write the new type as a new version with an upcaster from version 1",
        ],
    );
    // Deep inside the payload too, and for the payload as a whole.
    refused(
        |p| {
            *at(p, &format!("{ITEM_ADDED_V1}/properties/item")) = json!({ "$ref": "#/$defs/Item" });
            at(p, ITEM_ADDED_V1).as_object_mut().unwrap().insert("$defs".into(), json!({ "Item": { "type": "object", "properties": { "sku": { "type": "string" } }, "required": ["sku"] } }));
        },
        &[
            "event `ItemAdded` version 1: the field `item` changed type from string to `Item`, but stored events of version 1 hold string; keep it as it was, and write the new type as a new version with an upcaster from version 1",
        ],
    );
    refused(
        |p| *at(p, ITEM_ADDED_V1) = json!({ "type": "string" }),
        &[
            "event `ItemAdded` version 1: the payload changed type from object to string, but stored events of version 1 hold object; keep it as it was, and write the new type as a new version with an upcaster from version 1",
        ],
    );
}

#[test]
fn a_required_field_added_to_a_stored_version_is_refused() {
    refused(
        |p| {
            at(p, &format!("{ITEM_ADDED_V1}/properties"))
                .as_object_mut()
                .unwrap()
                .insert(
                    "quantity".into(),
                    json!({ "type": "integer", "format": "uint32", "minimum": 0 }),
                );
            *at(p, &format!("{ITEM_ADDED_V1}/required")) = json!(["item", "quantity"]);
        },
        &[
            "event `ItemAdded` version 1: the new field `quantity` is required, but stored events of version 1 do not have it; give it a default (`#[serde(default)]`, or make it an `Option`), or add it in a new version with an upcaster from version 1",
        ],
    );
    refused(
        |p| *at(p, "/events/ItemRemoved/versions/2/schema/required") = json!(["item", "reason"]),
        &[
            "event `ItemRemoved` version 2: the field `reason` was optional and is now required, but stored events of version 2 may lack it; keep it optional (`#[serde(default)]`, or an `Option`), or require it from a new version on",
        ],
    );
}

#[test]
fn a_removed_version_or_one_without_a_route_is_refused() {
    // ItemRemoved back at version 1: version 2 is stored.
    refused(
        |p| remove(p, "/events/ItemRemoved/versions/2"),
        &[
            "event `ItemRemoved`: version 2 is in the lock, but the program's current version is 1, so stored events of version 2 would no longer load; bring version 2 back as the current type",
        ],
    );
    // ItemRemoved raised to version 2 without `upcast_from`: version 1 has no route.
    refused(
        |p| remove(p, "/events/ItemRemoved/versions/1"),
        &[
            "event `ItemRemoved`: version 1 is in the lock, but the current version 2 has no route from it, so stored events of version 1 would no longer load; keep the version 1 type and link it with #[event(upcast_from = …)], or add #[event(upcast(from = 1, with = …))]",
        ],
    );
}

#[test]
fn a_stored_name_that_disappears_is_refused() {
    refused(
        |p| {
            remove(p, "/events/Deposited");
            *at(p, "/aggregates/account/events") = json!(["Withdrawn"]);
        },
        &[
            "the stored event `Deposited` (`esrs_examples::bank::Deposited`) is no longer in the program, so its stored events would no longer load; keep its type, or, if it was renamed, list the old name in the new type's #[event(aliases = [\"Deposited\"])]",
        ],
    );
    // The Rust type was renamed, and its stored name, taken from the type's name, with it.
    refused(
        |p| {
            let event = at(p, "/events")
                .as_object_mut()
                .unwrap()
                .remove("Deposited")
                .unwrap();
            let mut event = event;
            event["rust_type"] = json!("esrs_examples::bank::PaidIn");
            event["versions"]["1"]["rust_type"] = json!("esrs_examples::bank::PaidIn");
            event["versions"]["1"]["schema"]["title"] = json!("PaidIn");
            at(p, "/events")
                .as_object_mut()
                .unwrap()
                .insert("PaidIn".into(), event);
            *at(p, "/aggregates/account/events") = json!(["PaidIn", "Withdrawn"]);
        },
        &[
            "the stored event `Deposited` (`esrs_examples::bank::Deposited`) is no longer in the program, so its stored events would no longer load; keep its type, or, if it was renamed, list the old name in the new type's #[event(aliases = [\"Deposited\"])]; its stored name was its Rust type's name, and `esrs_examples::bank::PaidIn` (stored as `PaidIn`) has its shape: if that is the renamed type, give it #[event(name = \"Deposited\")] to keep storing it as before",
        ],
    );
}

#[test]
fn a_stored_name_moved_to_another_aggregate_is_refused() {
    refused(
        |p| {
            *at(p, "/aggregates/loyalty/events") = json!([]);
            *at(p, "/aggregates/orders/events") = json!(["OrderPlaced", "PointsAdded"]);
        },
        &[
            "aggregate `loyalty` no longer has the event `PointsAdded`, but its streams hold such events, which would no longer load; keep an #[apply] handler for it in the aggregate",
        ],
    );
}

#[test]
fn a_removed_aggregate_or_alias_is_refused() {
    refused(
        |p| remove(p, "/aggregates/player"),
        &[
            "the aggregate `player` (`esrs_examples::leaderboard::Player`) is no longer in the program, so its streams would no longer load; keep it, with #[aggregate(name = \"player\")]",
        ],
    );
    let mut locked = committed();
    at(&mut locked, "/events/ItemAdded")
        .as_object_mut()
        .unwrap()
        .insert("aliases".into(), json!(["ProductAdded"]));
    let (breaking, _) = check(&locked, &program());
    assert_eq!(
        breaking,
        [
            "event `ItemAdded`: the alias `ProductAdded` is gone, so events stored under `ProductAdded` would no longer load; keep it in #[event(aliases = [\"ProductAdded\"])]"
        ]
    );
}

#[test]
fn compatible_changes_pass() {
    // A new event, in an aggregate.
    accepted(
        |p| {
            at(p, "/events").as_object_mut().unwrap().insert(
                "CartEmptied".into(),
                json!({ "explicit_name": true, "rust_type": "esrs_examples::cart::Emptied", "versions": { "1": { "rust_type": "esrs_examples::cart::Emptied", "schema": { "type": "null" } } } }),
            );
            *at(p, "/aggregates/cart/events") =
                json!(["CartCheckedOut", "CartEmptied", "ItemAdded", "ItemRemoved"]);
        },
        &[
            "new event `CartEmptied`",
            "aggregate `cart`: new event `CartEmptied`",
        ],
    );
    // A new version with its route from the old ones.
    accepted(
        |p| {
            let versions = at(p, "/events/ItemRemoved/versions")
                .as_object_mut()
                .unwrap();
            let mut v3 = versions["2"].clone();
            v3["schema"]["properties"]["at"] = json!({ "type": ["string", "null"] });
            versions.insert("3".into(), v3);
            versions["1"]["upcast"]
                .as_array_mut()
                .unwrap()
                .push(json!("2 -> 3: payload upcaster add_at"));
            versions["2"]["upcast"] = json!(["2 -> 3: payload upcaster add_at"]);
            versions["2"].as_object_mut().unwrap().remove("rust_type");
            versions["2"].as_object_mut().unwrap().remove("schema");
        },
        &[
            "event `ItemRemoved` version 1: upcast route now 1 -> 2: From<esrs_examples::cart::ItemRemovedV1>; 2 -> 3: payload upcaster add_at",
            "event `ItemRemoved` version 2: now decoded through a payload upcaster",
            "event `ItemRemoved` version 2: upcast route now 2 -> 3: payload upcaster add_at",
            "event `ItemRemoved` version 2 is read without a schema of its own; the lock keeps the one it had",
            "event `ItemRemoved`: new version 3",
        ],
    );
    // An optional field, a renamed Rust type and an alias.
    accepted(
        |p| {
            at(p, &format!("{ITEM_ADDED_V1}/properties"))
                .as_object_mut()
                .unwrap()
                .insert("note".into(), json!({ "type": ["string", "null"] }));
            *at(p, "/events/CartCheckedOut/rust_type") =
                json!("esrs_examples::cart::CheckedOutCart");
            set(p, "/events/ItemAdded/aliases", json!(["ProductAdded"]));
        },
        &[
            "event `CartCheckedOut` is now the Rust type `esrs_examples::cart::CheckedOutCart` (was `esrs_examples::cart::CheckedOut`)",
            "event `ItemAdded` version 1: new optional field `note`",
            "event `ItemAdded`: new alias `ProductAdded`",
        ],
    );
}

#[test]
fn a_rename_with_an_alias_passes() {
    // The lock knows the event as "ProductAdded"; the program stores it as "ItemAdded", with
    // the old name as an alias.
    let mut locked = committed();
    let event = at(&mut locked, "/events")
        .as_object_mut()
        .unwrap()
        .remove("ItemAdded")
        .unwrap();
    at(&mut locked, "/events")
        .as_object_mut()
        .unwrap()
        .insert("ProductAdded".into(), event);
    *at(&mut locked, "/aggregates/cart/events") =
        json!(["CartCheckedOut", "ItemRemoved", "ProductAdded"]);
    let mut changed = program();
    set(
        &mut changed,
        "/events/ItemAdded/aliases",
        json!(["ProductAdded"]),
    );
    assert_eq!(
        check(&locked, &changed),
        (vec![], vec!["event `ProductAdded` is now stored as `ItemAdded`, with `ProductAdded` as an alias".to_owned()])
    );
    // Without the alias, the old name is gone.
    let (breaking, _) = check(&locked, &program());
    assert_eq!(breaking.len(), 1, "{breaking:?}");
    assert!(
        breaking[0].starts_with("the stored event `ProductAdded`"),
        "{breaking:?}"
    );
}

/// A lock file of the test's own, removed afterwards.
struct TempLock(std::path::PathBuf);

impl TempLock {
    fn new(content: Option<&str>) -> Self {
        let path =
            std::env::temp_dir().join(format!("esrs-lock-{}.json", uuid::Uuid::new_v4().simple()));
        if let Some(content) = content {
            std::fs::write(&path, content).unwrap();
        }
        Self(path)
    }
}

impl Drop for TempLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn verify_lock_reads_writes_and_refuses_files() {
    if std::env::var_os(catalog::UPDATE_VAR).is_some() {
        // This test is about the file when nobody asked for an update.
        return;
    }
    let missing = TempLock::new(None);
    let error = catalog::verify_lock(&missing.0).unwrap_err();
    assert!(matches!(error, LockError::Missing { .. }));
    assert_eq!(
        error.to_string(),
        format!(
            "there is no event catalog lock at {}: run `ESRS_UPDATE_CATALOG=1 cargo test` once to write it, and commit it",
            missing.0.display()
        )
    );

    catalog::write_lock(&missing.0).unwrap();
    assert_eq!(
        catalog::verify_lock(&missing.0).unwrap(),
        LockStatus::UpToDate
    );

    // Behind: the file lacks a compatible change; it is left alone.
    let mut older = committed();
    remove(
        &mut older,
        "/events/ItemRemoved/versions/2/schema/properties/reason",
    );
    let behind = TempLock::new(Some(&serde_json::to_string(&older).unwrap()));
    let status = catalog::verify_lock(&behind.0).unwrap();
    assert_eq!(
        status,
        LockStatus::Behind {
            changes: vec!["event `ItemRemoved` version 2: new optional field `reason`".into()]
        }
    );
    assert!(!status.is_up_to_date());

    // Breaking: the whole message, as a failing test prints it (`Debug` is `Display`).
    let mut newer = committed();
    at(&mut newer, "/events/Withdrawn/versions")
        .as_object_mut()
        .unwrap()
        .insert(
            "2".into(),
            json!({ "rust_type": "esrs_examples::bank::Withdrawn" }),
        );
    let broken = TempLock::new(Some(&serde_json::to_string(&newer).unwrap()));
    let error = catalog::verify_lock(&broken.0).unwrap_err();
    assert_eq!(
        format!("{error:?}"),
        format!(
            "the program's events break the event catalog lock {}:\n  - event `Withdrawn`: version 2 is in the lock, but the program's current version is 1, so stored events of version 2 would no longer load; bring version 2 back as the current type\nIf none of these events was ever stored (a change still in development), accept them with ESRS_UPDATE_CATALOG=force.",
            broken.0.display()
        )
    );

    let garbled = TempLock::new(Some("{ \"format\": 1, "));
    assert!(matches!(
        catalog::verify_lock(&garbled.0),
        Err(LockError::Parse { .. })
    ));
    let future = TempLock::new(Some("{ \"format\": 2 }"));
    assert!(matches!(
        catalog::verify_lock(&future.0),
        Err(LockError::Format { found: 2, .. })
    ));
}
