//! Expansion of a checked event, and the stand-in emitted beside errors.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput};

use crate::attr;

use super::{EventInput, PayloadUpcast};

/// The `Event` impl, the compile-time checks of `upcast_from` and the catalog entry.
pub(super) fn expand(input: &EventInput<'_>) -> TokenStream {
    let ident = input.ident;
    let name = &input.name;
    let version = input.version;
    let private = quote!(::esrs_core::__private);

    let known_versions = if input.upcast_from.is_none() && input.upcasts.is_empty() {
        quote!()
    } else {
        let previous = input.upcast_from.as_ref().map(|prev| {
            quote_spanned! {prev.span()=>
                ::core::iter::Extend::extend(&mut known, <#prev as ::esrs_core::Event>::known_versions());
            }
        });
        let mut steps: Vec<(u32, u32)> = input.upcasts.iter().map(|u| (u.from, u.to)).collect();
        steps.sort_unstable_by(|a, b| b.cmp(a));
        let step = steps.iter().map(|(from, to)| {
            quote! {
                if known.contains(&#to) && !known.contains(&#from) {
                    known.push(#from);
                }
            }
        });
        quote! {
            fn known_versions() -> ::std::vec::Vec<u32> {
                let mut known = ::std::vec![#version];
                #previous
                #(#step)*
                known.sort_unstable();
                known.dedup();
                known
            }
        }
    };

    // The versions the type decodes whatever its `upcast_from` type decodes: its own and
    // those its upcasters lead to it from (the rule of `known_versions`, at compile time).
    let mut decoded_here = vec![version];
    let mut steps: Vec<(u32, u32)> = input.upcasts.iter().map(|u| (u.from, u.to)).collect();
    steps.sort_unstable_by(|a, b| b.cmp(a));
    for (from, to) in steps {
        if decoded_here.contains(&to) && !decoded_here.contains(&from) {
            decoded_here.push(from);
        }
    }
    let payload_steps = input.upcasts.iter().map(|upcast| {
        let PayloadUpcast { from, to, with, .. } = upcast;
        let call = quote_spanned! {with.span()=>
            #private::run_payload_upcaster(#name, #from, payload, #with)
        };
        // An upcaster whose target is decoded only through `upcast_from` is checked
        // against the full list (a rare shape); the others need no check at run time.
        let known = if decoded_here.contains(from) {
            quote!()
        } else {
            quote!(&&<Self as ::esrs_core::Event>::known_versions().contains(&version))
        };
        quote! {
            if version == #from #known {
                let upcast = #call?;
                return <Self as ::esrs_core::Event>::decode(#to, #private::RawValue::get(&upcast));
            }
        }
    });
    let previous_step = input.upcast_from.as_ref().map(|prev| {
        let call = quote_spanned! {prev.span()=>
            ::core::result::Result::map(
                <#prev as ::esrs_core::Event>::decode(version, payload),
                <#prev as #private::UpcastInto<Self>>::upcast_into,
            )
        };
        // A version the previous type does not know is one this type does not know: the
        // error lists this type's versions.
        quote! {
            if version < #version {
                return ::core::result::Result::map_err(#call, |error| match error {
                    ::esrs_core::DecodeError::UnknownVersion { version: unknown, .. }
                        if unknown == version =>
                    {
                        ::esrs_core::DecodeError::UnknownVersion {
                            name: #name,
                            version,
                            known: <Self as ::esrs_core::Event>::known_versions(),
                        }
                    }
                    other => other,
                });
            }
        }
    });
    let decode_older = quote! {
        #(#payload_steps)*
        #previous_step
    };
    let parse = quote_spanned! {ident.span()=>
        #private::parse_event::<Self>(version, payload)
    };

    let previous_checks = input.upcast_from.as_ref().map(|prev| {
        let prev_text = attr::path_text(prev);
        let lower = format!(
            "the `upcast_from` type `{prev_text}` must have a lower version than `{ident}` (version {version}): lower `{prev_text}`'s #[event(version = …)] or raise `{ident}`'s"
        );
        let same_name = format!(
            "the `upcast_from` type `{prev_text}` must be stored under the same name as `{ident}` (\"{name}\"): give `{prev_text}` #[event(name = \"{name}\")]"
        );
        quote_spanned! {prev.span()=>
            const _: () = if <#prev as ::esrs_core::Event>::VERSION >= #version {
                ::core::panic!("{}", #lower)
            };
            const _: () = if !#private::str_eq(<#prev as ::esrs_core::Event>::NAME, #name) {
                ::core::panic!("{}", #same_name)
            };
        }
    });
    let info = match &input.upcast_from {
        Some(prev) => quote! {
            #private::EventInfo::of::<#ident>().with_upcast_from::<#prev>()
        },
        None => quote!(#private::EventInfo::of::<#ident>()),
    };

    quote! {
        #[automatically_derived]
        impl ::esrs_core::Event for #ident {
            const NAME: &'static str = #name;
            const VERSION: u32 = #version;

            #known_versions

            fn decode(
                version: u32,
                payload: &::core::primitive::str,
            ) -> ::core::result::Result<Self, ::esrs_core::DecodeError> {
                if version == #version {
                    return #parse;
                }
                #decode_older
                ::core::result::Result::Err(::esrs_core::DecodeError::UnknownVersion {
                    name: #name,
                    version,
                    known: <Self as ::esrs_core::Event>::known_versions(),
                })
            }
        }

        const _: () = {
            #previous_checks
            #private::inventory::submit! { #info }
        };
    }
}

/// A stand-in impl emitted beside the errors, so that uses of the type elsewhere do not add
/// a cascade of "not an event" errors.
pub(super) fn stub(input: &DeriveInput) -> TokenStream {
    if !matches!(input.data, Data::Struct(_)) || !input.generics.params.is_empty() {
        return quote!();
    }
    let ident = &input.ident;
    let name = ident.to_string();
    quote! {
        #[automatically_derived]
        impl ::esrs_core::Event for #ident {
            const NAME: &'static str = #name;
            const VERSION: u32 = 1;
            fn decode(
                version: u32,
                _: &::core::primitive::str,
            ) -> ::core::result::Result<Self, ::esrs_core::DecodeError> {
                ::core::result::Result::Err(::esrs_core::DecodeError::UnknownVersion {
                    name: #name,
                    version,
                    known: ::std::vec::Vec::new(),
                })
            }
        }
    }
}
