//! What the source file of an `#[aggregate]` block shows about the rest of its module, for
//! the mistakes whose expansion would collide with another item, reported once here
//! instead: a second `#[aggregate]` block on one state type, and an event type that two
//! handlers name, one through a `type` alias of the module.
//!
//! The macro sees its own block only; the file is read from disk and parsed again. Where it
//! cannot be (no file on disk, a block written by another macro, a file that does not parse),
//! nothing is known and the block expands as usual.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::rc::Rc;

use proc_macro2::Span;
use quote::ToTokens;
use syn::visit::Visit;
use syn::{Attribute, Item, ItemImpl};

use crate::fingerprint;

/// Where an `#[aggregate]` attribute is written.
pub(crate) struct Site {
    file: PathBuf,
    /// 1-based.
    line: usize,
    /// 0-based, in characters.
    column: usize,
}

impl Site {
    /// The site of the attribute a macro is called by, when it is in a file on disk.
    pub(crate) fn of(span: Span) -> Option<Site> {
        let file = span.local_file()?;
        let start = span.start();
        (start.line > 0).then_some(Site {
            file,
            line: start.line,
            column: start.column,
        })
    }
}

/// The attribute inserted at the site, to find the block in the parsed file.
const MARK: &str = "__esrs_this_aggregate_block";

/// What a file's items show, read once per file.
#[derive(Default)]
struct Summary {
    /// The self types (as token text) with two `#[aggregate]` blocks or more in one module.
    repeated: HashSet<String>,
    /// The names of the file's `type` aliases, in any module (as canonical text).
    aliases: HashSet<String>,
}

thread_local! {
    /// The [`Summary`] of each file read, with the text it was read from.
    static SUMMARIES: RefCell<HashMap<PathBuf, (String, Rc<Summary>)>> =
        RefCell::new(HashMap::new());
}

/// The source file of an `#[aggregate]` block, as far as the block's checks need it.
///
/// Reading a large file's items costs tens of milliseconds in a macro, so the file is read
/// in full once, into a [`Summary`] (kept per file for the compiler's process); only a block
/// that the summary says may be concerned looks for itself in the file.
pub(super) struct File<'a> {
    site: &'a Site,
    source: String,
    summary: Rc<Summary>,
}

impl<'a> File<'a> {
    /// The file of the block at `site`, when it can be read.
    pub(super) fn read(site: &'a Site) -> Option<Self> {
        let source = std::fs::read_to_string(&site.file).ok()?;
        let known = SUMMARIES.with(|cache| {
            cache
                .borrow()
                .get(&site.file)
                .filter(|(text, _)| *text == source)
                .map(|(_, summary)| Rc::clone(summary))
        });
        let summary = match known {
            Some(summary) => summary,
            None => {
                let summary = Rc::new(summary(&source));
                SUMMARIES.with(|cache| {
                    cache
                        .borrow_mut()
                        .insert(site.file.clone(), (source.clone(), Rc::clone(&summary)))
                });
                summary
            }
        };
        Some(File {
            site,
            source,
            summary,
        })
    }

    /// Whether the module of the block, on `self_ty`, holds an earlier `#[aggregate]`
    /// block on the same type.
    pub(super) fn earlier_block(&self, self_ty: &str) -> bool {
        self.summary.repeated.contains(self_ty)
            && earlier_block_in(&self.source, self.site.line, self.site.column)
    }

    /// The `type` aliases of the block's module, when one of the types `names` (as
    /// canonical text) may be one: by alias name, the type it names, as canonical text.
    pub(super) fn aliases(&self, names: &[String]) -> HashMap<String, String> {
        if !names.iter().any(|name| self.summary.aliases.contains(name)) {
            return HashMap::new();
        }
        aliases_in(&self.source, self.site.line, self.site.column)
    }
}

/// The [`Summary`] of a file's text.
fn summary(source: &str) -> Summary {
    let Ok(file) = syn::parse_file(source) else {
        return Summary::default();
    };
    let mut summary = Summary::default();
    for scope in scopes(&file) {
        let mut seen = HashSet::new();
        for imp in impls(&scope).filter(|imp| counted(imp)) {
            let self_ty = imp.self_ty.to_token_stream().to_string();
            if !seen.insert(self_ty.clone()) {
                summary.repeated.insert(self_ty);
            }
        }
        summary
            .aliases
            .extend(type_aliases(&scope).map(|(name, _)| name));
    }
    summary
}

/// The items of the module of the block whose attribute starts at `line` and `column`, in
/// the text of a file, with the block's index among them (`None` when the block is not
/// found), handed to `f`.
fn with_module<T>(
    source: &str,
    line: usize,
    column: usize,
    f: impl FnOnce(&[&Item], usize) -> T,
) -> Option<T> {
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    let at = offset(source, line, column).filter(|&at| source[at..].starts_with('#'))?;
    let marked = format!("{}#[{MARK}] {}", &source[..at], &source[at..]);
    let file = syn::parse_file(&marked).ok()?;
    let scopes = scopes(&file);
    let (scope, at) = scopes.iter().find_map(|scope| {
        let at = scope.iter().position(|item| {
            matches!(item, Item::Impl(imp) if imp.attrs.iter().any(|a| a.path().is_ident(MARK)))
        })?;
        Some((scope, at))
    })?;
    Some(f(scope, at))
}

/// Whether the block whose attribute starts at `line` and `column` has an earlier
/// `#[aggregate]` block on its self type in its module, in the text of a file.
fn earlier_block_in(source: &str, line: usize, column: usize) -> bool {
    with_module(source, line, column, |items, at| {
        let Item::Impl(this) = items[at] else {
            return false;
        };
        let self_ty = this.self_ty.to_token_stream().to_string();
        impls(&items[..at])
            .any(|other| counted(other) && other.self_ty.to_token_stream().to_string() == self_ty)
    })
    .unwrap_or(false)
}

/// The `type` aliases of the module of the block whose attribute starts at `line` and
/// `column`, in the text of a file.
fn aliases_in(source: &str, line: usize, column: usize) -> HashMap<String, String> {
    with_module(source, line, column, |items, _| {
        type_aliases(items).collect()
    })
    .unwrap_or_default()
}

/// The non-generic `type` aliases among `items`: the canonical text of the name and of the
/// type.
fn type_aliases<'a>(items: &'a [&'a Item]) -> impl Iterator<Item = (String, String)> + 'a {
    items.iter().filter_map(|item| match item {
        Item::Type(alias) if alias.generics.params.is_empty() => Some((
            fingerprint::canonical_text(alias.ident.to_token_stream()),
            fingerprint::canonical_text(alias.ty.to_token_stream()),
        )),
        _ => None,
    })
}

/// The byte offset of a 1-based line and a 0-based character column.
fn offset(source: &str, line: usize, column: usize) -> Option<usize> {
    let mut start = 0;
    for _ in 1..line {
        start += source[start..].find('\n')? + 1;
    }
    let text = &source[start..];
    let text = &text[..text.find('\n').unwrap_or(text.len())];
    let (within, _) = text.char_indices().nth(column)?;
    Some(start + within)
}

/// An inherent `#[aggregate]` block, not under `#[cfg]` (which may leave it out).
fn counted(imp: &ItemImpl) -> bool {
    imp.trait_.is_none()
        && imp.attrs.iter().any(is_aggregate)
        && !imp
            .attrs
            .iter()
            .any(|a| a.path().is_ident("cfg") || a.path().is_ident("cfg_attr"))
}

/// Every list of items of a file (the file, each inline module, each block of
/// statements), list by list.
fn scopes(file: &syn::File) -> Vec<Vec<&Item>> {
    let mut scopes = Scopes(vec![file.items.iter().collect()]);
    scopes.visit_file(file);
    scopes.0
}

fn impls<'a>(items: &'a [&'a Item]) -> impl Iterator<Item = &'a ItemImpl> + 'a {
    items.iter().filter_map(|item| match item {
        Item::Impl(imp) => Some(imp),
        _ => None,
    })
}

struct Scopes<'ast>(Vec<Vec<&'ast Item>>);

impl<'ast> Visit<'ast> for Scopes<'ast> {
    fn visit_item_mod(&mut self, module: &'ast syn::ItemMod) {
        if let Some((_, items)) = &module.content {
            self.0.push(items.iter().collect());
        }
        syn::visit::visit_item_mod(self, module);
    }

    fn visit_block(&mut self, block: &'ast syn::Block) {
        self.0.push(
            block
                .stmts
                .iter()
                .filter_map(|stmt| match stmt {
                    syn::Stmt::Item(item) => Some(item),
                    _ => None,
                })
                .collect(),
        );
        syn::visit::visit_block(self, block);
    }
}

/// `#[aggregate(...)]`, under any path (`#[esrs_core::aggregate]`).
pub(super) fn is_aggregate(attribute: &Attribute) -> bool {
    attribute
        .path()
        .segments
        .last()
        .is_some_and(|s| s.ident == "aggregate")
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = "use esrs_core::prelude::*;

#[aggregate(name = \"cart\")]
impl Cart {}

#[aggregate(name = \"basket\")]
impl Cart {}
";

    fn repeated(source: &str) -> Vec<String> {
        let mut types: Vec<String> = summary(source).repeated.into_iter().collect();
        types.sort();
        types
    }

    #[test]
    fn a_second_block_on_one_type_in_one_module_is_found() {
        assert_eq!(repeated(TWO), ["Cart"]);
        assert!(!earlier_block_in(TWO, 3, 0));
        assert!(earlier_block_in(TWO, 6, 0));
        // Not at an attribute, or past the text: nothing is known.
        assert!(!earlier_block_in(TWO, 7, 0));
        assert!(!earlier_block_in(TWO, 60, 0));
        assert!(!earlier_block_in(TWO, 6, 80));
    }

    #[test]
    fn blocks_in_other_modules_or_on_other_types_or_under_cfg_are_not_counted() {
        let modules = "mod a {\n    #[aggregate(name = \"a\")]\n    impl Cart {}\n}\nmod b {\n    #[aggregate(name = \"b\")]\n    impl Cart {}\n}\n";
        assert!(repeated(modules).is_empty());
        assert!(!earlier_block_in(modules, 6, 4));
        let nested = "mod a {\n    #[aggregate(name = \"a\")]\n    impl Cart {}\n    #[esrs_core::aggregate(name = \"b\")]\n    impl Cart {}\n}\nmod b {\n    #[aggregate(name = \"c\")]\n    impl Cart {}\n}\n";
        assert_eq!(repeated(nested), ["Cart"]);
        assert!(earlier_block_in(nested, 4, 4));
        assert!(!earlier_block_in(nested, 8, 4));
        let types = "#[aggregate(name = \"a\")]\nimpl Cart {}\nimpl Cart {}\n#[aggregate(name = \"b\")]\nimpl Order {}\n";
        assert!(repeated(types).is_empty());
        assert!(!earlier_block_in(types, 4, 0));
        let cfg = "#[cfg(test)]\n#[aggregate(name = \"a\")]\nimpl Cart {}\n#[aggregate(name = \"b\")]\nimpl Cart {}\n";
        assert!(repeated(cfg).is_empty());
        assert!(!earlier_block_in(cfg, 4, 0));
        let in_fn = "fn f() {\n    #[aggregate(name = \"a\")]\n    impl Cart {}\n    #[aggregate(name = \"b\")]\n    impl Cart {}\n}\n";
        assert_eq!(repeated(in_fn), ["Cart"]);
        assert!(earlier_block_in(in_fn, 4, 4));
    }

    #[test]
    fn the_aliases_of_the_block_s_module_are_read() {
        let text = "type Added = ItemAdded;\nmod other {\n    type Gone = crate::Removed;\n    #[aggregate(name = \"a\")]\n    impl Cart {}\n}\ntype Generic<T> = Vec<T>;\n#[aggregate(name = \"b\")]\nimpl Cart {}\n";
        let canonical = |text: &str| fingerprint::canonical_text(text.parse().unwrap());
        let mut names: Vec<String> = summary(text).aliases.into_iter().collect();
        names.sort();
        assert_eq!(names, [canonical("Added"), canonical("Gone")]);
        let root = aliases_in(text, 8, 0);
        assert_eq!(root.len(), 1);
        assert_eq!(root[&canonical("Added")], canonical("ItemAdded"));
        let other = aliases_in(text, 4, 4);
        assert_eq!(other.len(), 1);
        assert_eq!(other[&canonical("Gone")], canonical("crate::Removed"));
        assert!(aliases_in(text, 2, 0).is_empty());
    }

    #[test]
    fn columns_count_characters() {
        let text = "/* é */ #[aggregate(name = \"a\")] impl Cart {}\n/* ü */ #[aggregate(name = \"b\")] impl Cart {}\n";
        assert!(earlier_block_in(text, 2, 8));
        assert!(!earlier_block_in(text, 2, 9));
    }
}
