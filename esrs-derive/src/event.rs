//! `#[derive(Event)]`: parse the `#[event(...)]` attributes, check them, expand the `Event`
//! impl, its upcasters and its catalog entry.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Ident, Path};

use crate::attr::{self, Keys};
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
    let parsed = parse(&mut cx, input);
    if let Some(parsed) = &parsed {
        check(&mut cx, parsed);
    }
    match parsed {
        Some(parsed) if cx.is_ok() => expand(&parsed),
        _ => {
            let errors = cx.into_compile_errors();
            let stub = stub(input);
            quote! { #errors #stub }
        }
    }
}

fn parse<'a>(cx: &mut Ctxt, input: &'a DeriveInput) -> Option<EventInput<'a>> {
    let mut ok = true;
    match &input.data {
        Data::Struct(_) => {}
        Data::Enum(data) => {
            cx.error_spanned_by(
                data.enum_token,
                "#[derive(Event)] goes on a struct: an event is one fact with one stored name; make each variant its own struct and let #[aggregate] generate the enum",
            );
            ok = false;
        }
        Data::Union(data) => {
            cx.error_spanned_by(
                data.union_token,
                "#[derive(Event)] goes on a struct, not a union",
            );
            ok = false;
        }
    }
    if !input.generics.params.is_empty() {
        cx.error_spanned_by(
            &input.generics,
            "an event cannot be generic: it is stored under one name and version; use a concrete struct",
        );
        ok = false;
    }

    let mut name = None;
    let mut version = None;
    let mut upcast_from = None;
    let mut upcasts = Vec::new();
    let mut keys = Keys::new("event", KEYS).repeatable(&["upcast"]);
    for attribute in input.attrs.iter().filter(|a| a.path().is_ident("event")) {
        let result = attribute.parse_nested_meta(|meta| {
            match keys.accept(cx, &meta)?.as_deref() {
                Some("name") => {
                    if let Some((value, span)) =
                        attr::string_value(cx, &meta, "name = \"ItemAdded\"")?
                    {
                        if value.is_empty() {
                            cx.error_at(span, "the stored name cannot be empty");
                        } else if let Some(c) = attr::bad_name_char(&value) {
                            cx.error_at(
                                span,
                                format!("the stored name cannot contain {c:?}: use letters, digits, `_`, `.` or `-`"),
                            );
                        } else {
                            name = Some(value);
                        }
                    }
                }
                Some("version") => {
                    if let Some((value, span)) = attr::int_value::<u32>(cx, &meta, "version = 2")?
                    {
                        if value == 0 {
                            cx.error_at(
                                span,
                                "event versions start at 1: write `version = 1` or higher",
                            );
                        } else {
                            version = Some((value, span));
                        }
                    }
                }
                Some("upcast_from") => {
                    upcast_from = Some(meta.value()?.parse::<Path>()?);
                }
                Some("upcast") => {
                    if let Some(upcast) = parse_upcast(cx, &meta)? {
                        upcasts.push(upcast);
                    }
                }
                _ => {}
            }
            Ok(())
        });
        if let Err(e) = result {
            cx.syn_error(e);
        }
    }
    if !ok {
        return None;
    }
    Some(EventInput {
        ident: &input.ident,
        name: name.unwrap_or_else(|| input.ident.to_string()),
        version: version.map_or(1, |(v, _)| v),
        upcast_from,
        upcasts,
    })
}

fn parse_upcast(
    cx: &mut Ctxt,
    meta: &syn::meta::ParseNestedMeta<'_>,
) -> syn::Result<Option<PayloadUpcast>> {
    let span = meta.path.span();
    let mut from = None;
    let mut to = None;
    let mut with = None;
    let mut keys = Keys::new("event(upcast", UPCAST_KEYS);
    if !meta.input.peek(syn::token::Paren) {
        cx.error_at(
            span,
            "write a payload upcaster as `upcast(from = 1, with = path::to::function)`",
        );
        attr::skip_value(meta)?;
        return Ok(None);
    }
    meta.parse_nested_meta(|inner| {
        match keys.accept(cx, &inner)?.as_deref() {
            Some("from") => from = attr::int_value::<u32>(cx, &inner, "from = 1")?,
            Some("to") => to = attr::int_value::<u32>(cx, &inner, "to = 2")?,
            Some("with") => with = Some(inner.value()?.parse::<Path>()?),
            _ => {}
        }
        Ok(())
    })?;
    let Some((from, from_span)) = from else {
        cx.error_at(
            span,
            "this upcaster needs `from = N`, the stored version it reads: `upcast(from = 1, with = path::to::function)`",
        );
        return Ok(None);
    };
    let Some(with) = with else {
        cx.error_at(
            span,
            "this upcaster needs `with = path::to::function`, a `fn(serde_json::Value) -> Result<serde_json::Value, E>` with `E: Display`",
        );
        return Ok(None);
    };
    if from == 0 {
        cx.error_at(
            from_span,
            "event versions start at 1: `from` must be 1 or higher",
        );
        return Ok(None);
    }
    let to = match to {
        Some((to, to_span)) if to <= from => {
            cx.error_at(
                to_span,
                format!("an upcaster goes forward: `to` must be higher than `from = {from}`"),
            );
            return Ok(None);
        }
        Some((to, _)) => to,
        None => from.saturating_add(1),
    };
    Ok(Some(PayloadUpcast {
        from,
        to,
        with,
        span: from_span,
    }))
}

fn check(cx: &mut Ctxt, input: &EventInput<'_>) {
    let version = input.version;
    let mut froms = Vec::new();
    for upcast in &input.upcasts {
        if upcast.from >= version {
            cx.error_at(
                upcast.span,
                format!(
                    "an upcaster reads a version older than the event's: `from = {}` must be lower than `version = {version}`",
                    upcast.from
                ),
            );
        } else if upcast.to > version {
            cx.error_at(
                upcast.span,
                format!(
                    "this upcaster writes version {}, newer than the event's `version = {version}`; set `to` at most {version}",
                    upcast.to
                ),
            );
        } else if froms.contains(&upcast.from) {
            cx.error_at(
                upcast.span,
                format!(
                    "a second upcaster from version {}; keep one per stored version",
                    upcast.from
                ),
            );
        }
        froms.push(upcast.from);
    }
    if input.upcast_from.is_none() {
        for upcast in &input.upcasts {
            let reachable = upcast.to == version || froms.contains(&upcast.to);
            if upcast.to < version && !reachable {
                cx.error_at(
                    upcast.span,
                    format!(
                        "this upcaster writes version {}, which nothing reads: add `upcast(from = {}, …)`, set `to = {version}`, or add `upcast_from = PreviousType`",
                        upcast.to, upcast.to
                    ),
                );
            }
        }
    }
}

fn expand(input: &EventInput<'_>) -> TokenStream {
    let ident = input.ident;
    let name = &input.name;
    let version = input.version;
    let private = quote!(::esrs_core::__private);

    let known_versions = if input.upcast_from.is_none() && input.upcasts.is_empty() {
        quote!()
    } else {
        let previous = input.upcast_from.as_ref().map(|prev| {
            quote_spanned! {prev.span()=>
                known.extend(<#prev as ::esrs_core::Event>::known_versions());
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

    let payload_steps = input.upcasts.iter().map(|upcast| {
        let PayloadUpcast { from, to, with, .. } = upcast;
        let call = quote_spanned! {with.span()=>
            #private::run_payload_upcaster(#name, #from, payload, #with)
        };
        quote! {
            if version == #from {
                let upcast = #call?;
                return <Self as ::esrs_core::Event>::decode(#to, &upcast);
            }
        }
    });
    let previous_step = input.upcast_from.as_ref().map(|prev| {
        let call = quote_spanned! {prev.span()=>
            #private::decode_previous::<#prev, Self>(version, payload)
        };
        quote! {
            if version < #version {
                return #call;
            }
        }
    });
    let decode_older = if input.upcast_from.is_none() && input.upcasts.is_empty() {
        quote!()
    } else {
        quote! {
            if !<Self as ::esrs_core::Event>::known_versions().contains(&version) {
                return ::core::result::Result::Err(::esrs_core::DecodeError::UnknownVersion {
                    name: #name,
                    version,
                    known: <Self as ::esrs_core::Event>::known_versions(),
                });
            }
            #(#payload_steps)*
            #previous_step
        }
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
                ::core::panic!(#lower)
            };
            const _: () = if !#private::str_eq(<#prev as ::esrs_core::Event>::NAME, #name) {
                ::core::panic!(#same_name)
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
                payload: &#private::RawValue,
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
fn stub(input: &DeriveInput) -> TokenStream {
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
                _: &::esrs_core::__private::RawValue,
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
