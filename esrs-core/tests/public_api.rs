//! The crate root stays narrow: at most 25 re-exports, each listed in the crate docs' "what
//! is where" table, and none of them re-exported again by a public module (every item has
//! one path).

use std::collections::BTreeSet;

const LIB: &str = include_str!("../src/lib.rs");

/// The public modules whose re-exports must not repeat a root item.
const MODULES: [(&str, &str); 6] = [
    ("store", include_str!("../src/store/mod.rs")),
    ("error", include_str!("../src/error/mod.rs")),
    ("projection", include_str!("../src/projection/mod.rs")),
    ("repository", include_str!("../src/repository/mod.rs")),
    ("catalog", include_str!("../src/catalog/mod.rs")),
    ("testing", include_str!("../src/testing/mod.rs")),
];

/// The names a file re-exports publicly with top-level `pub use` items.
fn reexports(source: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut item = String::new();
    for line in source.lines() {
        if item.is_empty() && !line.starts_with("pub use ") {
            continue;
        }
        item.push_str(line.trim());
        item.push(' ');
        if !line.trim_end().ends_with(';') {
            continue;
        }
        let path = item
            .trim_start_matches("pub use ")
            .trim()
            .trim_end_matches(';');
        let list = match path.find('{') {
            Some(open) => &path[open + 1..path.rfind('}').expect("a closing brace")],
            None => path.rsplit("::").next().expect("a name"),
        };
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let name = name.rsplit(" as ").next().expect("a name");
            names.insert(name.rsplit("::").next().expect("a name").to_owned());
        }
        item.clear();
    }
    names
}

#[test]
fn the_root_is_narrow_and_documented() {
    let root = reexports(LIB);
    assert!(
        root.len() <= 25,
        "the crate root re-exports {} items (at most 25): {root:?}",
        root.len()
    );
    let table = LIB
        .split("//! # What is where")
        .nth(1)
        .and_then(|rest| rest.split("//! # ").next())
        .expect("the crate docs have a \"What is where\" section");
    for name in &root {
        assert!(
            table.contains(&format!("[`{name}`]")),
            "`{name}` is re-exported at the root but not in the \"what is where\" table"
        );
    }
    // The count is of real items: the ones named in this test exist at the root.
    assert!(root.contains("Repository") && root.contains("EventStore"));
}

#[test]
fn every_item_has_one_path() {
    let root = reexports(LIB);
    for (module, source) in MODULES {
        let again: Vec<_> = reexports(source).intersection(&root).cloned().collect();
        assert!(
            again.is_empty(),
            "`esrs_core::{module}` re-exports root items again: {again:?}"
        );
    }
}
