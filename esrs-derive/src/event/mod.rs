//! `#[derive(Event)]`: parse the struct and its `#[event(...)]` attributes (`parse`), check
//! the versions and upcasters together (`check`), then expand the `Event` impl, its
//! upcasters and its catalog entry (`expand`).

mod check;
mod expand;
mod parse;

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::{DeriveInput, Ident, Path};

use crate::ctxt::Ctxt;

const KEYS: &[&str] = &["name", "version", "upcast_from", "upcast"];
const UPCAST_KEYS: &[&str] = &["from", "to", "with"];

/// A payload-level upcaster: `upcast(from = 1, to = 2, with = path)`.
struct PayloadUpcast {
    from: u32,
    to: u32,
    with: Path,
    span: Span,
}

/// The parsed input of `#[derive(Event)]`.
struct EventInput<'a> {
    ident: &'a Ident,
    name: String,
    version: u32,
    upcast_from: Option<Path>,
    upcasts: Vec<PayloadUpcast>,
}

/// Expands `#[derive(Event)]`.
pub(crate) fn derive(input: &DeriveInput) -> TokenStream {
    let mut cx = Ctxt::default();
    let parsed = parse::parse(&mut cx, input);
    if let Some(parsed) = &parsed {
        check::check(&mut cx, parsed);
    }
    match parsed {
        Some(parsed) if cx.is_ok() => expand::expand(&parsed),
        _ => {
            let errors = cx.into_compile_errors();
            let stub = expand::stub(input);
            quote! { #errors #stub }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn derive_str(item: &str) -> String {
        derive(&syn::parse_str(item).unwrap()).to_string()
    }

    #[test]
    fn bad_attributes_give_errors_and_a_stand_in_impl() {
        let inputs = [
            "#[event] struct E;",
            "#[event = 1] struct E;",
            "#[event(version)] struct E;",
            "#[event(version = -1)] struct E;",
            "#[event(version = 4294967296)] struct E;",
            "#[event(name = 1)] struct E;",
            "#[event(upcast_from = 1)] struct E;",
            "#[event(upcast)] struct E;",
            "#[event(upcast(from = 0, with = f))] struct E;",
            "#[event(upcast(with = f))] struct E;",
            "#[event(upcast(from = 1, to = 1, with = f), version = 2)] struct E;",
            "#[event(upcast(from = 1, with = f, colour = 2), version = 2)] struct E;",
            "#[event(version = 2, upcast(from = 1, to = 3, with = f))] struct E;",
        ];
        for item in inputs {
            let out = derive_str(item);
            assert!(out.contains("compile_error"), "{item}: {out}");
            assert!(
                out.contains("impl :: esrs_core :: Event for E"),
                "{item}: {out}"
            );
        }
        let out = derive_str("union U { a: u8 }");
        assert!(
            out.contains("compile_error") && !out.contains("impl"),
            "{out}"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let out = derive_str("#[event(name = \"\", version = 0, colour = 1)] struct E;");
        assert_eq!(out.matches("compile_error").count(), 3, "{out}");
    }
}
