//! What the source file of an `#[aggregate]` block shows about the other blocks of its
//! module: a second `#[aggregate]` block on one state type is reported there, once, instead
//! of as the collisions of the two expansions.
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

/// The self types of [`repeated_types`] in a file, with the text they were read from.
type Repeated = (String, Rc<HashSet<String>>);

thread_local! {
    /// [`Repeated`] by file.
    static REPEATED: RefCell<HashMap<PathBuf, Repeated>> = RefCell::new(HashMap::new());
}

/// Whether the module of the block at `site`, on `self_ty`, holds an earlier
/// `#[aggregate]` block on the same type.
///
/// Reading a large file's items costs tens of milliseconds in a macro, so the file is read
/// in full once, for the types with more than one block in a module (kept per file for
/// the compiler's process); only a block on one of them looks for itself in the file.
pub(super) fn earlier_block(site: &Site, self_ty: &str) -> bool {
    let Ok(source) = std::fs::read_to_string(&site.file) else {
        return false;
    };
    let known = REPEATED.with(|cache| {
        cache
            .borrow()
            .get(&site.file)
            .filter(|(text, _)| *text == source)
            .map(|(_, types)| Rc::clone(types))
    });
    let repeated = match known {
        Some(types) => types,
        None => {
            let types = Rc::new(repeated_types(&source));
            REPEATED.with(|cache| {
                cache
                    .borrow_mut()
                    .insert(site.file.clone(), (source.clone(), Rc::clone(&types)))
            });
            types
        }
    };
    repeated.contains(self_ty) && earlier_block_in(&source, site.line, site.column)
}

/// The self types (as token text) with two `#[aggregate]` blocks or more in one module.
fn repeated_types(source: &str) -> HashSet<String> {
    let Ok(file) = syn::parse_file(source) else {
        return HashSet::new();
    };
    let mut repeated = HashSet::new();
    for scope in scopes(&file) {
        let mut seen = HashSet::new();
        for imp in scope.into_iter().filter(|imp| counted(imp)) {
            let self_ty = imp.self_ty.to_token_stream().to_string();
            if !seen.insert(self_ty.clone()) {
                repeated.insert(self_ty);
            }
        }
    }
    repeated
}

/// Whether the block whose attribute starts at `line` and `column` has an earlier
/// `#[aggregate]` block on its self type in its module, in the text of a file.
fn earlier_block_in(source: &str, line: usize, column: usize) -> bool {
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    let Some(at) = offset(source, line, column).filter(|&at| source[at..].starts_with('#')) else {
        return false;
    };
    let marked = format!("{}#[{MARK}] {}", &source[..at], &source[at..]);
    let Ok(file) = syn::parse_file(&marked) else {
        return false;
    };
    scopes(&file).into_iter().any(|scope| {
        let Some(at) = scope
            .iter()
            .position(|imp| imp.attrs.iter().any(|a| a.path().is_ident(MARK)))
        else {
            return false;
        };
        let self_ty = scope[at].self_ty.to_token_stream().to_string();
        scope[..at]
            .iter()
            .any(|other| counted(other) && other.self_ty.to_token_stream().to_string() == self_ty)
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

/// The impl blocks of every list of items of a file (the file, each inline module, each
/// block of statements), list by list.
fn scopes(file: &syn::File) -> Vec<Vec<&ItemImpl>> {
    let mut scopes = Scopes(vec![impls(&file.items)]);
    scopes.visit_file(file);
    scopes.0
}

fn impls<'a>(items: impl IntoIterator<Item = &'a Item>) -> Vec<&'a ItemImpl> {
    items
        .into_iter()
        .filter_map(|item| match item {
            Item::Impl(imp) => Some(imp),
            _ => None,
        })
        .collect()
}

struct Scopes<'ast>(Vec<Vec<&'ast ItemImpl>>);

impl<'ast> Visit<'ast> for Scopes<'ast> {
    fn visit_item_mod(&mut self, module: &'ast syn::ItemMod) {
        if let Some((_, items)) = &module.content {
            self.0.push(impls(items));
        }
        syn::visit::visit_item_mod(self, module);
    }

    fn visit_block(&mut self, block: &'ast syn::Block) {
        self.0
            .push(impls(block.stmts.iter().filter_map(|stmt| match stmt {
                syn::Stmt::Item(item) => Some(item),
                _ => None,
            })));
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
        let mut types: Vec<String> = repeated_types(source).into_iter().collect();
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
    fn columns_count_characters() {
        let text = "/* é */ #[aggregate(name = \"a\")] impl Cart {}\n/* ü */ #[aggregate(name = \"b\")] impl Cart {}\n";
        assert!(earlier_block_in(text, 2, 8));
        assert!(!earlier_block_in(text, 2, 9));
    }
}
