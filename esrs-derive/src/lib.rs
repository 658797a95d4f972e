//! Procedural macros of esrs: `#[derive(Event)]` and `#[aggregate]`.
//!
//! Use them through `esrs-core`, which re-exports both (`use esrs_core::prelude::*;`); the
//! code they generate names the runtime as `::esrs_core`, so a program depends on
//! `esrs-core` only.

mod aggregate;
mod attr;
mod ctxt;
mod event;
mod fingerprint;

use proc_macro::TokenStream;

#[doc = include_str!("../docs/event.md")]
#[proc_macro_derive(Event, attributes(event))]
pub fn derive_event(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    event::derive(&input).into()
}

#[doc = include_str!("../docs/aggregate.md")]
#[proc_macro_attribute]
pub fn aggregate(args: TokenStream, item: TokenStream) -> TokenStream {
    aggregate::expand(args.into(), item.into()).into()
}
