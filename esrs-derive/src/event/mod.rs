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
