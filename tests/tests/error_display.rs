//! The workspace's rule for error types: a thiserror variant either prints its cause in its
//! `#[error("…")]` text or hands it out through `source()`, never both, so that a chain
//! walker (`ErrorChain`, anyhow's `{:#}`) shows every cause once.
//!
//! This test reads every Rust file of the workspace and fails on an `#[error("…")]` that
//! prints a field thiserror treats as the source: one marked `#[source]` or `#[from]`, or
//! one named `source`. `#[error(transparent)]` forwards both and is fine.

use std::path::{Path, PathBuf};

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

/// The fields an `#[error]` text prints: the placeholders of its format string (`{name}`,
/// `{0:?}`) and the fields its further arguments name (`.name`, `.0`). `None` for
/// `transparent` or a form this check does not read.
fn printed_fields(tokens: TokenStream) -> Option<Vec<String>> {
    let mut tokens = tokens.into_iter();
    let format = match tokens.next()? {
        TokenTree::Literal(literal) => match syn::parse_str::<syn::LitStr>(&literal.to_string()) {
            Ok(format) => format.value(),
            Err(_) => return None,
        },
        _ => return None,
    };
    let mut fields = placeholders(&format);
    fields.extend(dotted_fields(tokens.collect()));
    Some(fields)
}

/// The named or numbered arguments of a format string.
fn placeholders(format: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
            }
            '{' => {
                let argument: String = chars.by_ref().take_while(|c| *c != '}').collect();
                let name = argument.split(':').next().unwrap_or("").trim();
                if !name.is_empty() {
                    names.push(name.to_owned());
                }
            }
            _ => {}
        }
    }
    names
}

/// The fields named `.field` or `.0` in the arguments after the format string.
fn dotted_fields(tokens: TokenStream) -> Vec<String> {
    let mut fields = Vec::new();
    let mut after_dot = false;
    for token in tokens {
        match &token {
            TokenTree::Punct(p) if p.as_char() == '.' => {
                after_dot = true;
                continue;
            }
            TokenTree::Ident(ident) if after_dot => fields.push(ident.to_string()),
            TokenTree::Literal(literal) if after_dot => fields.push(literal.to_string()),
            TokenTree::Group(group) => fields.extend(dotted_fields(group.stream())),
            _ => {}
        }
        after_dot = false;
    }
    fields
}

/// The fields thiserror takes as the source: `#[source]`, `#[from]`, or named `source`.
fn source_fields(fields: &syn::Fields) -> Vec<String> {
    fields
        .iter()
        .enumerate()
        .filter_map(|(i, field)| {
            let name = field
                .ident
                .as_ref()
                .map_or_else(|| i.to_string(), ToString::to_string);
            let marked = field
                .attrs
                .iter()
                .any(|a| a.path().is_ident("source") || a.path().is_ident("from"));
            (marked || name == "source").then_some(name)
        })
        .collect()
}

/// The token streams of an item's `#[error(…)]` attributes.
fn error_attributes(attrs: &[syn::Attribute]) -> Vec<TokenStream> {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("error"))
        .filter_map(|a| match &a.meta {
            syn::Meta::List(list) => Some(list.tokens.clone()),
            _ => None,
        })
        .collect()
}

/// Collects, for one file, the error types whose text prints their source.
#[derive(Default)]
struct Check {
    offences: Vec<String>,
}

impl Check {
    fn check(&mut self, name: String, attrs: &[TokenStream], fields: &syn::Fields) {
        let sources = source_fields(fields);
        for tokens in attrs {
            let Some(printed) = printed_fields(tokens.clone()) else {
                continue;
            };
            for field in printed.iter().filter(|f| sources.contains(f)) {
                self.offences.push(format!(
                    "`{name}` prints its source `{field}` in #[error({tokens})]"
                ));
            }
        }
    }
}

impl<'ast> Visit<'ast> for Check {
    fn visit_item_struct(&mut self, item: &'ast syn::ItemStruct) {
        let attrs = error_attributes(&item.attrs);
        self.check(item.ident.to_string(), &attrs, &item.fields);
        syn::visit::visit_item_struct(self, item);
    }

    fn visit_item_enum(&mut self, item: &'ast syn::ItemEnum) {
        // An `#[error]` on the enum itself is the text of the variants without their own.
        let fallback = error_attributes(&item.attrs);
        for variant in &item.variants {
            let own = error_attributes(&variant.attrs);
            let attrs = if own.is_empty() { &fallback } else { &own };
            let name = format!("{}::{}", item.ident, variant.ident);
            self.check(name, attrs, &variant.fields);
        }
        syn::visit::visit_item_enum(self, item);
    }
}

/// The offences of one file's source text.
fn offences(text: &str) -> Result<Vec<String>, syn::Error> {
    let file = syn::parse_file(text)?;
    let mut check = Check::default();
    check.visit_file(&file);
    Ok(check.offences)
}

/// Every `.rs` file under `dir`, but for build output and the compile-fail cases.
fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" && !path.ends_with("tests/ui") {
                rust_files(&path, files);
            }
        } else if name.ends_with(".rs") {
            files.push(path);
        }
    }
}

#[test]
fn no_error_of_the_workspace_prints_its_source() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root");
    let mut files = Vec::new();
    rust_files(root, &mut files);
    assert!(
        files.iter().any(|f| f.ends_with("esrs-core/src/lib.rs")),
        "the workspace's sources are found from {}",
        root.display()
    );
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("a readable source file");
        let shown = file.strip_prefix(root).unwrap_or(file).display();
        match offences(&text) {
            Ok(offences) => found.extend(offences.into_iter().map(|o| format!("{shown}: {o}"))),
            Err(e) => found.push(format!("{shown}: does not parse: {e}")),
        }
    }
    assert!(
        found.is_empty(),
        "an error variant prints its source in its text and hands it out through \
         source(): print it or mark it as the source, not both\n  {}",
        found.join("\n  ")
    );
}

/// The check itself finds each way of printing a source, and lets the others pass.
#[test]
fn the_check_finds_a_printed_source() {
    let text = r#"
        #[derive(Debug, thiserror::Error)]
        enum Bad {
            #[error("named: {source}")]
            Named { source: Inner },
            #[error("marked: {cause:?}")]
            Marked { #[source] cause: Inner },
            #[error("from: {0}")]
            From(#[from] Inner),
            #[error("argument: {}", .0)]
            Argument(#[source] Inner),
            #[error("nested: {}", shorten(.inner))]
            Nested { #[source] inner: Inner },
        }

        mod deeper {
            fn f() {
                #[derive(Debug, thiserror::Error)]
                #[error("a struct: {0}")]
                struct InFunction(#[source] Inner);
            }
        }

        #[derive(Debug, thiserror::Error)]
        #[error("fallback: {source}")]
        enum Fallback {
            Variant { source: Inner },
            #[error("its own text")]
            Own { source: Inner },
        }
    "#;
    let found = offences(text).expect("the sample parses");
    let names: Vec<&str> = found
        .iter()
        .map(|o| o.split('`').nth(1).unwrap_or(""))
        .collect();
    assert_eq!(
        names,
        [
            "Bad::Named",
            "Bad::Marked",
            "Bad::From",
            "Bad::Argument",
            "Bad::Nested",
            "InFunction",
            "Fallback::Variant"
        ],
        "{found:#?}"
    );

    let good = r#"
        #[derive(Debug, thiserror::Error)]
        enum Good {
            #[error("the layer's own text, {{braces}} and {field}")]
            Layer { field: u32, #[source] source: Inner },
            #[error(transparent)]
            Transparent(#[from] Inner),
            #[error("rejected: {0}")]
            Rejected(String),
            #[error("a source left out: {}", .name)]
            Argument { name: String, #[source] cause: Inner },
        }
    "#;
    assert_eq!(
        offences(good).expect("the sample parses"),
        Vec::<String>::new()
    );
}
