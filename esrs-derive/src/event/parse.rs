//! Parsing of the struct and its `#[event(...)]` attributes.

use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Path};

use crate::attr::{self, Keys};
use crate::ctxt::Ctxt;

use super::{EventInput, KEYS, PayloadUpcast, UPCAST_KEYS};

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
