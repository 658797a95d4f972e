//! Parsing of the struct and its `#[event(...)]` attributes.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Attribute, Data, DeriveInput, Fields, Member, Meta, Path, Token};

use crate::attr::{self, Keys};
use crate::ctxt::Ctxt;

use super::{EventInput, FIELD_KEYS, KEYS, Mirror, MirrorField, PayloadUpcast, Style, UPCAST_KEYS};

/// Parses the struct and its `#[event(...)]` attributes; `None` when the item cannot be an
/// event at all (an enum, a union, a generic type).
pub(super) fn parse<'a>(cx: &mut Ctxt, input: &'a DeriveInput) -> Option<EventInput<'a>> {
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
    let mut aliases: Vec<(String, Span)> = Vec::new();
    let mut schema = true;
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
                        if let Some(problem) = name_problem(&value) {
                            cx.error_at(span, format!("the stored name {problem}"));
                        } else {
                            name = Some(value);
                        }
                    }
                }
                Some("aliases") => {
                    let values =
                        attr::string_list_value(cx, &meta, "aliases = [\"ProductAdded\"]")?;
                    for (value, span) in values {
                        if let Some(problem) = name_problem(&value) {
                            cx.error_at(span, format!("an alias {problem}"));
                        } else if aliases.iter().any(|(a, _)| *a == value) {
                            cx.error_at(span, format!("the alias \"{value}\" is listed twice"));
                        } else {
                            aliases.push((value, span));
                        }
                    }
                }
                Some("schema") => {
                    if let Some((value, _)) = attr::bool_value(cx, &meta, "schema = false")? {
                        schema = value;
                    }
                }
                Some("version") => {
                    if let Some((value, span)) = attr::int_value::<u32>(cx, &meta, "version = 2")? {
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
    let explicit_name = name.is_some();
    let name = name.unwrap_or_else(|| input.ident.to_string());
    for (alias, span) in &aliases {
        if *alias == name {
            cx.error_at(
                *span,
                format!("\"{alias}\" is the event's stored name; an alias is a former name, different from it"),
            );
        }
    }
    let Data::Struct(data) = &input.data else {
        return None;
    };
    let mirror = parse_mirror(cx, input, &data.fields, schema);
    if !ok {
        return None;
    }
    Some(EventInput {
        ident: &input.ident,
        name,
        explicit_name,
        aliases: aliases.into_iter().map(|(a, _)| a).collect(),
        version: version.map_or(1, |(v, _)| v),
        upcast_from,
        upcasts,
        schema: schema.then_some(mirror),
    })
}

/// What is wrong with a stored name or alias, if anything.
fn name_problem(value: &str) -> Option<String> {
    if value.is_empty() {
        Some("cannot be empty".to_owned())
    } else {
        attr::bad_name_char(value)
            .map(|c| format!("cannot contain {c:?}: use letters, digits, `_`, `.` or `-`"))
    }
}

/// The serde attributes whose value is a function or module that reads or writes the field:
/// its shape is then not its type's, and schemars cannot see it.
const SERDE_CODECS: &[&str] = &["with", "serialize_with", "deserialize_with"];

/// Reads the fields and serde attributes the schema is derived from, and the fields'
/// `#[event(...)]` attributes (checked even with `schema = false`).
fn parse_mirror<'a>(
    cx: &mut Ctxt,
    input: &'a DeriveInput,
    fields: &'a Fields,
    schema: bool,
) -> Mirror<'a> {
    let attrs: Vec<&Attribute> = input
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("serde"))
        .collect();
    let default = attrs.iter().any(|a| {
        serde_metas(a).is_some_and(|metas| {
            metas
                .iter()
                .any(|m| matches!(m, Meta::Path(p) if p.is_ident("default")))
        })
    });
    let style = match fields {
        Fields::Named(_) => Style::Named,
        Fields::Unnamed(_) => Style::Tuple,
        Fields::Unit => Style::Unit,
    };
    let mut mirror_fields = Vec::new();
    for (index, field) in fields.iter().enumerate() {
        let mut any = None;
        let mut keys = Keys::new("event", FIELD_KEYS);
        for attribute in field.attrs.iter().filter(|a| a.path().is_ident("event")) {
            let result = attribute.parse_nested_meta(|meta| {
                if let Some("schema_any") = keys.accept(cx, &meta)?.as_deref() {
                    if meta.input.is_empty() || meta.input.peek(Token![,]) {
                        any = Some(meta.path.span());
                    } else {
                        cx.error_spanned_by(
                            &meta.path,
                            "write `#[event(schema_any)]`, with no value",
                        );
                        attr::skip_value(&meta)?;
                    }
                }
                Ok(())
            });
            if let Err(e) = result {
                cx.syn_error(e);
            }
        }
        if let (Some(span), false) = (any, schema) {
            cx.error_at(
                span,
                "`schema_any` has no effect with #[event(schema = false)]: remove one of them",
            );
        }
        let mut field_attrs = Vec::new();
        for attribute in field.attrs.iter().filter(|a| a.path().is_ident("serde")) {
            let Some(metas) = serde_metas(attribute) else {
                // Not ours to report: serde's derive says what is wrong with it.
                continue;
            };
            if any.is_none() {
                if let Some(codec) = metas
                    .iter()
                    .find(|m| SERDE_CODECS.iter().any(|c| m.path().is_ident(c)))
                {
                    if schema {
                        cx.error_spanned_by(
                            codec,
                            format!(
                                "the field is written by `#[serde({} = …)]`, whose JSON shape the event's schema cannot see: mark the field `#[event(schema_any)]` (any value) or the event `#[event(schema = false)]`",
                                attr::path_text(codec.path())
                            ),
                        );
                    }
                }
                field_attrs.push(attribute.to_token_stream());
            } else {
                // The field's schema accepts any value: keep what names or skips it, and
                // its optionality; drop what reads or writes its Rust type.
                let kept: Vec<TokenStream> = metas
                    .iter()
                    .filter_map(|m| {
                        let path = m.path();
                        if path.is_ident("default") {
                            Some(quote!(default))
                        } else if [
                            "rename",
                            "alias",
                            "skip",
                            "skip_deserializing",
                            "skip_serializing",
                            "flatten",
                        ]
                        .iter()
                        .any(|k| path.is_ident(k))
                        {
                            Some(m.to_token_stream())
                        } else {
                            None
                        }
                    })
                    .collect();
                if !kept.is_empty() {
                    field_attrs.push(quote!(#[serde(#(#kept),*)]));
                }
            }
        }
        let member = match &field.ident {
            Some(ident) => Member::Named(ident.clone()),
            None => Member::Unnamed(syn::Index {
                index: u32::try_from(index).unwrap_or(u32::MAX),
                span: field.ty.span(),
            }),
        };
        mirror_fields.push(MirrorField {
            member,
            ty: if any.is_some() { None } else { Some(&field.ty) },
            attrs: field_attrs,
        });
    }
    Mirror {
        attrs,
        default,
        fields: mirror_fields,
        style,
    }
}

/// The items of a `#[serde(...)]` attribute, if it parses as a list of metas.
fn serde_metas(attribute: &Attribute) -> Option<Punctuated<Meta, Token![,]>> {
    attribute
        .parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
        .ok()
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
