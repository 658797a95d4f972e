//! `#[aggregate]`: parse the attribute and the impl block's `#[apply]` handlers
//! (`parse`), check them together (`check`), then expand the event enum, its conversions,
//! the `Aggregate` impl and the compile-time checks (`expand`).

mod check;
mod expand;
mod parse;
mod source;

pub(crate) use source::Site;

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote};
use syn::{Ident, Item, Path, Type, TypePath, Visibility};

use crate::ctxt::Ctxt;

const KEYS: &[&str] = &[
    "name",
    "snapshot_every",
    "snapshot_version",
    "event_enum",
    "derive",
    "require_event_names",
];

/// The parsed `#[aggregate(...)]` arguments.
#[derive(Default)]
struct Args {
    name: Option<String>,
    /// Whether a `name` key was written (perhaps with a refused value).
    name_given: bool,
    snapshot_every: Option<(u64, Span)>,
    snapshot_version: Option<(u32, Span)>,
    event_enum: Option<(Visibility, Ident)>,
    derive: Option<Vec<Path>>,
    /// `require_event_names`: every event must have `#[event(name = "…")]`.
    require_event_names: bool,
}

/// One `#[apply]` handler.
struct Handler {
    method: Ident,
    event: TypePath,
    variant: Ident,
    code: String,
}

/// A method of the impl block that is not a handler, and the types its return type names.
struct Command {
    /// The method's generic parameters and where clause, with `Self` as the state type.
    params: TokenStream,
    where_clause: TokenStream,
    /// The whole return type, when it can be named, with the spans of its success type.
    whole: Option<(Type, (Span, Span))>,
    /// The path types named in the return type.
    leaves: Vec<Leaf>,
}

/// A path type named in a method's return type.
struct Leaf {
    ty: Type,
    /// Its first and last token's spans.
    spans: (Span, Span),
    /// Whether it is inside an `impl Trait`.
    opaque: bool,
}

/// `#[apply]` or `#[helper]` where `#[aggregate]` did not remove it: on a method of an impl
/// block without `#[aggregate]`, or on another item. The item is kept as written.
pub(crate) fn marker_outside_block(
    marker: &str,
    _args: TokenStream,
    item: TokenStream,
) -> TokenStream {
    let what = match marker {
        "apply" => "an event handler",
        _ => "a method the event handlers call",
    };
    let message = format!(
        "#[{marker}] marks {what} in the impl block of an aggregate's state, and this one has no #[aggregate]: put #[aggregate(name = \"…\")] on the impl block that holds it"
    );
    let error = syn::Error::new(Span::call_site(), message).into_compile_error();
    quote!(#error #item)
}

/// Expands `#[aggregate]` written at `site` (when it is known).
pub(crate) fn expand(args: TokenStream, item: TokenStream, site: Option<&Site>) -> TokenStream {
    let mut cx = Ctxt::default();
    let args = parse::parse_args(&mut cx, args);
    let item: Item = match syn::parse2(item.clone()) {
        Ok(item) => item,
        Err(e) => {
            cx.syn_error(e);
            let errors = cx.into_compile_errors();
            return quote!(#errors #item);
        }
    };
    let mut imp = match item {
        Item::Impl(imp) if imp.trait_.is_none() => imp,
        Item::Impl(mut imp) => {
            parse::strip_markers(&mut imp);
            if let Some((_, path, _)) = &imp.trait_ {
                cx.error_spanned_by(
                    path,
                    "#[aggregate] goes on the inherent impl block of the state type (`impl Cart { … }`), not on a trait impl",
                );
            }
            let errors = cx.into_compile_errors();
            return quote!(#errors #imp);
        }
        other => {
            let at: TokenStream = match &other {
                Item::Struct(s) => s.ident.to_token_stream(),
                Item::Enum(e) => e.ident.to_token_stream(),
                Item::Fn(f) => f.sig.ident.to_token_stream(),
                Item::Trait(t) => t.ident.to_token_stream(),
                _ => other.to_token_stream(),
            };
            cx.error_spanned_by(
                at,
                "#[aggregate] goes on the inherent impl block of the state type, holding its #[apply] handlers: `#[aggregate(name = \"cart\")] impl Cart { … }`",
            );
            let errors = cx.into_compile_errors();
            return quote!(#errors #other);
        }
    };

    // A state type passed through a `macro_rules!` fragment (`impl $state { … }`) is read
    // as the type it holds.
    if let Type::Group(_) = &*imp.self_ty {
        *imp.self_ty = crate::attr::peel_type(&imp.self_ty).clone();
    }

    // A second block on the state type would expand over the first one's output: it is
    // reported alone, and kept as a plain impl so that its methods exist.
    let file = site.and_then(source::File::read);
    let self_text = imp.self_ty.to_token_stream().to_string();
    if file
        .as_ref()
        .is_some_and(|file| file.earlier_block(&self_text))
    {
        imp.attrs.retain(|a| !source::is_aggregate(a));
        parse::strip_markers(&mut imp);
        let shown = match &*imp.self_ty {
            Type::Path(TypePath { qself: None, path }) => crate::attr::path_text(path),
            _ => self_text,
        };
        let message = format!(
            "`{shown}` already has an #[aggregate] impl block in this module, and an aggregate has one: move the methods of this block into it"
        );
        let error = syn::Error::new(Span::call_site(), message).into_compile_error();
        return quote!(#error #imp);
    }

    // A second `#[aggregate]` on the same block would expand over this one's output.
    let (again, attrs): (Vec<_>, Vec<_>) = std::mem::take(&mut imp.attrs)
        .into_iter()
        .partition(source::is_aggregate);
    imp.attrs = attrs;
    for attribute in &again {
        cx.error_spanned_by(
            attribute,
            "#[aggregate] is written twice on this impl block: keep one, with every argument in it",
        );
    }

    if !imp.generics.params.is_empty() {
        cx.error_spanned_by(
            &imp.generics,
            "an aggregate cannot be generic: its stream category and events are fixed; use #[aggregate] on a concrete type",
        );
    }
    let self_ident = match &*imp.self_ty {
        Type::Path(TypePath { qself: None, path }) => path.segments.last().map(|s| s.ident.clone()),
        _ => None,
    };
    let Some(self_ident) = self_ident else {
        cx.error_spanned_by(
            &imp.self_ty,
            "#[aggregate] goes on the impl block of a named state type: `impl Cart { … }`",
        );
        parse::strip_markers(&mut imp);
        let errors = cx.into_compile_errors();
        return quote!(#errors #imp);
    };

    let parse::Items {
        mut handlers,
        marked,
        refused,
        helpers,
        others,
    } = parse::take_handlers(&mut cx, &mut imp);
    let commands = parse::find_commands(&imp, &others);
    check::check(&mut cx, &args, &handlers);
    if let Some(file) = &file {
        let names: Vec<String> = handlers
            .iter()
            .map(|h| crate::fingerprint::canonical_text(h.event.to_token_stream()))
            .collect();
        check::check_aliases(&mut cx, &handlers, &file.aliases(&names));
    }
    // A refused `&mut self` method may be the handler whose #[apply] was forgotten: its
    // error says so, and is enough.
    if marked == 0 && refused == 0 {
        cx.error_spanned_by(
            &imp.self_ty,
            "an aggregate needs at least one #[apply] handler, e.g. `#[apply] fn added(&mut self, event: &ItemAdded) { … }`",
        );
    }

    let (vis, enum_ident) = match &args.event_enum {
        Some((Visibility::Inherited, ident)) => (quote!(pub), ident.clone()),
        Some((vis, ident)) => (vis.to_token_stream(), ident.clone()),
        None => (quote!(pub), format_ident!("{}Event", self_ident)),
    };
    check::check_names(&mut cx, &args, &self_ident, &enum_ident, &mut handlers);
    if !cx.is_ok() {
        // The user's impl (without the `#[apply]` markers) and a bare event enum, so that
        // the errors above are not followed by a cascade about missing items.
        let mut seen = std::collections::HashSet::new();
        let variants = handlers
            .iter()
            .filter(|h| seen.insert(h.variant.to_string()))
            .map(|h| {
                let (variant, event) = (&h.variant, &h.event);
                quote!(#variant(#event))
            });
        let errors = cx.into_compile_errors();
        // An enum named like the state would collide with it.
        let stand_in = (enum_ident != self_ident).then(|| {
            quote! {
                #[allow(dead_code, missing_docs)]
                #vis enum #enum_ident { #(#variants),* }
            }
        });
        return quote! {
            #errors
            #imp
            #stand_in
        };
    }
    let name = args.name.clone().unwrap_or_default();
    let generated = expand::Generated {
        args: &args,
        name: &name,
        self_ty: &imp.self_ty,
        self_text: self_ident.to_string(),
        vis,
        enum_ident,
        handlers: &handlers,
        helpers: &helpers,
        commands: &commands,
    };
    let expanded = generated.expand();
    quote! {
        #imp
        #expanded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_str(args: &str, item: &str) -> String {
        expand(args.parse().unwrap(), item.parse().unwrap(), None).to_string()
    }

    const CART: &str = "impl Cart {
        #[apply]
        fn added(&mut self, e: &ItemAdded) { self.items.push(e.item.clone()) }
    }";

    #[test]
    fn the_fold_fingerprint_is_pinned() {
        // Snapshots written by one release must be used by the next when the fold did not
        // change: the canonical text and hash of a handler are part of the storage format.
        let out = expand_str("name = \"cart\", snapshot_every = 10", CART);
        assert!(
            out.contains("snapshot_key (1u32 , 17343898703721969883u64)"),
            "{out}"
        );
        let changed = expand_str(
            "name = \"cart\", snapshot_every = 10",
            &CART.replace("push(e.item.clone())", "insert(0, e.item.clone())"),
        );
        assert!(!changed.contains("17343898703721969883u64"), "{changed}");
    }

    #[test]
    fn helpers_are_part_of_the_fingerprint_and_other_mut_methods_are_refused() {
        let args = "name = \"cart\", snapshot_every = 10";
        let with_helper = |body: &str| {
            expand_str(
                args,
                &CART.replace(
                    "\n    }",
                    &format!("\n        #[helper] fn tidy(&mut self) {{ {body} }}\n    }}"),
                ),
            )
        };
        let (sorted, deduped) = (
            with_helper("self.items.sort()"),
            with_helper("self.items.dedup()"),
        );
        assert!(!sorted.contains("compile_error"), "{sorted}");
        assert!(
            !sorted.contains("# [helper]"),
            "the marker is removed: {sorted}"
        );
        let key = |out: &str| out[out.find("snapshot_key").unwrap()..][..60].to_owned();
        assert_ne!(key(&sorted), key(&deduped));
        assert_ne!(key(&sorted), key(&expand_str(args, CART)));

        let refused = expand_str(
            args,
            &CART.replace(
                "\n    }",
                "\n        fn clear(&mut self) { self.items.clear() }\n    }",
            ),
        );
        assert!(
            refused.contains("compile_error") && refused.contains("#[helper]"),
            "{refused}"
        );
    }

    #[test]
    fn every_method_returning_a_type_is_probed_by_type() {
        let item = CART.replace(
            "\n    }",
            "\n        fn check_out(&self) -> Outcome<Done> { todo!() }\n        fn emit<E: Event>(&self) -> Result<Vec<E>, String> { todo!() }\n        fn count(&self) -> usize { 0 }\n    }",
        );
        let out = expand_str("name = \"cart\"", &item);
        // Each method's return type is read whatever its spelling: an alias of `Result`, an
        // alias of an event, a generic method (with its generics).
        assert!(out.contains("fn __esrs_command_0 ()"), "{out}");
        assert!(out.contains("Probe :: < () , Done , CartEvent >"), "{out}");
        assert!(
            out.contains("Probe :: < Outcome < Done > , Done , CartEvent >"),
            "{out}"
        );
        assert!(
            out.contains("fn __esrs_command_1 < E : Event > ()"),
            "{out}"
        );
        assert!(out.contains("Probe :: < () , E , CartEvent >"), "{out}");
        assert!(out.contains("Probe :: < () , usize , CartEvent >"), "{out}");
    }

    #[test]
    fn bad_input_gives_errors_and_keeps_the_item() {
        let inputs = [
            ("", "struct Cart;"),
            ("name", CART),
            ("name = ", CART),
            ("name = 3", CART),
            ("= \"cart\"", CART),
            ("name = \"cart\", snapshot_every = -1", CART),
            (
                "name = \"cart\", snapshot_every = 99999999999999999999999",
                CART,
            ),
            ("name = \"cart\", event_enum = 3", CART),
            ("name = \"cart\", derive(1)", CART),
            (
                "name = \"cart\"",
                "impl Cart { #[apply] fn f(&mut self, e: &[u8]) {} }",
            ),
            ("name = \"cart\"", "impl Cart { #[apply] fn f(e: &X) {} }"),
            ("name = \"cart\"", "impl<'a> Cart<'a> {}"),
            ("name = \"cart\"", "impl (A, B) {}"),
            ("name = \"cart\"", "fn cart() {}"),
            ("name = \"cart\"", "not rust at all"),
            (
                "name = \"cart\"",
                "impl Cart { #[apply] #[cfg(test)] fn f(&mut self, e: &X) {} }",
            ),
            (
                "name = \"cart\"",
                "impl Cart { #[apply] fn f(&mut self, e: &X) {} #[helper] fn g(&self) {} }",
            ),
            (
                "name = \"cart\"",
                "impl Cart { #[apply] fn f(&mut self, e: &CartEvent) {} }",
            ),
            (
                "name = \"cart\", event_enum = Cart",
                "impl Cart { #[apply] fn f(&mut self, e: &X) {} }",
            ),
        ];
        for (args, item) in inputs {
            let out = expand_str(args, item);
            assert!(out.contains("compile_error"), "{args:?} {item:?}: {out}");
        }
        let out = expand_str("name = \"\"", CART);
        assert!(out.contains("impl Cart"), "the user's impl is kept: {out}");
        assert!(!out.contains("# [apply]"), "the markers are removed: {out}");
    }
}
