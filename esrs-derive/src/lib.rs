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
mod hygiene;

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
    let site = aggregate::Site::of(proc_macro2::Span::call_site());
    aggregate::expand(args.into(), item.into(), site.as_ref()).into()
}

/// Marks an event handler, `fn name(&mut self, event: &SomeEvent)`, in the impl block of an
/// aggregate's state, which `#[aggregate]` reads (and removes the mark from).
///
/// Anywhere else it is an error that says to put `#[aggregate]` on the impl block.
#[proc_macro_attribute]
pub fn apply(args: TokenStream, item: TokenStream) -> TokenStream {
    aggregate::marker_outside_block("apply", args.into(), item.into()).into()
}

/// Marks a `&mut self` method that the event handlers of an `#[aggregate]` impl block call;
/// see `#[aggregate]`.
///
/// Anywhere else it is an error that says to put `#[aggregate]` on the impl block.
#[proc_macro_attribute]
pub fn helper(args: TokenStream, item: TokenStream) -> TokenStream {
    aggregate::marker_outside_block("helper", args.into(), item.into()).into()
}
