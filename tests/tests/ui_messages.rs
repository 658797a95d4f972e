//! The pinned diagnostics of the compile-fail suite (`tests/ui`) are in the user's terms, and
//! the macros' docs list every rule with its error, checked against the suite so that the two
//! cannot drift.
//!
//! - No `.stderr` shows a path into `esrs_core::__private`, an item declared there, a name
//!   the macros generate for their own use (`__…`), or a failed constant evaluation.
//! - Every message's brackets and backticks balance.
//! - Every compile-fail case is listed in `esrs-derive/docs/*.md`, in a table row that quotes
//!   its first error, and every case a row names exists.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const SUITES: [&str; 3] = ["aggregate", "event", "personal"];

fn ui_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("ui")
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is in the workspace")
        .to_path_buf()
}

/// Every pinned `.stderr`, by its case name (`aggregate/no_handler`), with its text.
fn pinned() -> BTreeMap<String, String> {
    let mut cases = BTreeMap::new();
    for suite in SUITES {
        let dir = ui_dir().join(suite);
        for entry in std::fs::read_dir(&dir).expect("a ui suite directory") {
            let path = entry.expect("a directory entry").path();
            if path.extension().is_some_and(|e| e == "rs") {
                let stderr = path.with_extension("stderr");
                let text = std::fs::read_to_string(&stderr)
                    .unwrap_or_else(|e| panic!("{} has no .stderr: {e}", path.display()));
                let stem = path.file_stem().and_then(|s| s.to_str()).expect("a name");
                cases.insert(format!("{suite}/{stem}"), text);
            }
        }
    }
    assert!(
        cases.len() >= 100,
        "the suite pins {} diagnostics",
        cases.len()
    );
    cases
}

/// The names declared public in `esrs-core/src/private.rs`: the items generated code uses,
/// which no message may show.
fn private_items() -> Vec<String> {
    let source = std::fs::read_to_string(workspace().join("esrs-core/src/private.rs"))
        .expect("esrs-core/src/private.rs");
    let file = syn::parse_file(&source).expect("private.rs parses");
    let mut names = Vec::new();
    for item in file.items {
        let (vis, ident) = match &item {
            syn::Item::Fn(f) => (&f.vis, f.sig.ident.clone()),
            syn::Item::Struct(s) => (&s.vis, s.ident.clone()),
            syn::Item::Trait(t) => (&t.vis, t.ident.clone()),
            syn::Item::Const(c) => (&c.vis, c.ident.clone()),
            _ => continue,
        };
        if matches!(vis, syn::Visibility::Public(_)) {
            names.push(ident.to_string());
        }
    }
    assert!(names.iter().any(|n| n == "Probe"), "{names:?}");
    names
}

/// Whether `word` occurs in `text` as a whole identifier.
fn has_word(text: &str, word: &str) -> bool {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

/// The primary message of each error in a `.stderr` (`error[E0277]: …` or `error: …`).
fn messages(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|line| line.starts_with("error"))
        .filter_map(|line| line.split_once(": ").map(|(_, message)| message))
        .collect()
}

/// What a `.stderr` shows of generated code: the `__private` module, its items, names the
/// macros generate for their own use (`__esrs_…`, `__check`), a failed constant evaluation.
fn internals_in(text: &str, private: &[String]) -> Vec<String> {
    let fixed = [
        "__private",
        "private.rs",
        "evaluation panicked",
        "evaluation of",
        "_::_",
        "esrs-derive/src",
    ];
    let mut found = Vec::new();
    for pattern in fixed {
        if text.contains(pattern) {
            found.push(format!("shows `{pattern}`"));
        }
    }
    for name in private {
        if has_word(text, name) {
            found.push(format!("shows the generated code's `{name}`"));
        }
    }
    // `__` followed by a letter: a generated name (an underline drawn with `_` is not one).
    for word in text.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
        if word
            .strip_prefix("__")
            .is_some_and(|rest| rest.chars().next().is_some_and(char::is_alphanumeric))
        {
            found.push(format!("shows the generated name `{word}`"));
        }
    }
    found
}

#[test]
fn the_scan_finds_internals() {
    let private = private_items();
    let shown = "note: required by a bound in `esrs_core::__private::encode_event`\n\
                 error[E0080]: evaluation panicked: x\n\
                 help: the trait `EventLeaf` is not implemented for `Probe<(), X, E>`\n\
                 fn __esrs_command_0() {}";
    let found = internals_in(shown, &private);
    for expected in [
        "`__private`",
        "evaluation panicked",
        "`EventLeaf`",
        "`Probe`",
        "`__esrs_command_0`",
    ] {
        assert!(
            found.iter().any(|f| f.contains(expected)),
            "{expected} not found in {found:?}"
        );
    }
    assert!(internals_in("   | |____________________^", &private).is_empty());
}

#[test]
fn no_diagnostic_shows_generated_internals() {
    let private = private_items();
    let mut problems = Vec::new();
    for (case, text) in pinned() {
        for found in internals_in(&text, &private) {
            problems.push(format!("{case}: {found}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_message_balances_its_brackets() {
    let mut problems = Vec::new();
    for (case, text) in pinned() {
        let lines = text
            .lines()
            .filter(|l| l.starts_with("error") || l.trim_start().starts_with("= note:"));
        for line in lines {
            let mut stack = Vec::new();
            let mut balanced = true;
            // Angle brackets are left out: `->` and `=>` stand alone in code.
            for c in line.chars() {
                match c {
                    '(' | '[' | '{' => stack.push(c),
                    ')' | ']' | '}' => {
                        let open = match c {
                            ')' => '(',
                            ']' => '[',
                            _ => '{',
                        };
                        balanced &= stack.pop() == Some(open);
                    }
                    _ => {}
                }
            }
            if !balanced || !stack.is_empty() || line.matches('`').count() % 2 == 1 {
                problems.push(format!("{case}: {line}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The rows of the docs' rule tables: the case each names (`ui/aggregate/no_handler.rs`)
/// and the error it quotes.
fn documented() -> BTreeMap<String, (String, String)> {
    let mut rows = BTreeMap::new();
    for doc in ["aggregate.md", "event.md"] {
        let text = std::fs::read_to_string(workspace().join("esrs-derive/docs").join(doc))
            .expect("the macro docs");
        for line in text.lines().filter(|l| l.starts_with('|')) {
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
            let Some(case) = cells
                .last()
                .and_then(|c| c.strip_prefix("`ui/"))
                .and_then(|c| c.strip_suffix(".rs`"))
            else {
                continue;
            };
            let error = cells
                .get(cells.len().wrapping_sub(2))
                .copied()
                .unwrap_or("");
            let previous = rows.insert(case.to_owned(), (doc.to_owned(), error.to_owned()));
            assert!(previous.is_none(), "`ui/{case}.rs` is listed twice");
        }
    }
    rows
}

/// `text` with the escapes of a markdown table cell undone (`\|` is `|`; outside code,
/// `\[`, `\]`, `\<` and `\>` are the brackets).
fn unescape(text: &str) -> String {
    ["|", "[", "]", "<", ">"]
        .iter()
        .fold(text.to_owned(), |text, c| {
            text.replace(&format!("\\{c}"), c)
        })
}

#[test]
fn the_docs_list_every_rule_with_its_error() {
    let cases = pinned();
    let rows = documented();
    let mut problems = Vec::new();
    for (case, stderr) in &cases {
        match rows.get(case) {
            None => problems.push(format!(
                "`ui/{case}.rs` is not listed in esrs-derive/docs/*.md"
            )),
            Some((doc, error)) => {
                let first = messages(stderr).first().copied().unwrap_or_default();
                if unescape(error) != first {
                    problems.push(format!(
                        "{doc}: the row of `ui/{case}.rs` quotes\n  {error}\nbut its first error is\n  {first}"
                    ));
                }
            }
        }
    }
    for case in rows.keys() {
        if !cases.contains_key(case) {
            problems.push(format!(
                "the docs list `ui/{case}.rs`, which does not exist"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
