//! Parsing of the struct and its `#[event(...)]` attributes.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Attribute, Data, DeriveInput, Fields, Member, Meta, Path, Token};

use crate::attr::{self, Keys};
use crate::ctxt::Ctxt;

use super::{
    EventInput, FIELD_KEYS, KEYS, Mirror, MirrorField, PayloadUpcast, PersonalFields, Style,
    UPCAST_KEYS,
};

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
    let mut oldest_version = None;
    let mut skipped_versions: Vec<(u32, Span)> = Vec::new();
    let mut upcasts = Vec::new();
    let mut keys = Keys::new("#[event(...)]", KEYS).repeatable(&["upcast"]);
    for attribute in input.attrs.iter().filter(|a| a.path().is_ident("event")) {
        let tokens = match attribute.meta.require_list() {
            Ok(list) => list.tokens.clone(),
            Err(e) => {
                cx.error_at(e.span(), "expected parentheses: #[event(...)]");
                continue;
            }
        };
        attr::parse_arguments(cx, tokens, form, |cx, argument, meta| {
            match keys.accept(cx, meta)?.as_deref() {
                Some("name") => {
                    if let Some((value, span)) =
                        attr::string_value(cx, argument, meta, "name = \"ItemAdded\"")?
                    {
                        if let Some(problem) = name_problem(&value) {
                            cx.error_at(span, format!("the stored name {problem}"));
                        } else {
                            name = Some(value);
                        }
                    }
                }
                Some("aliases") => {
                    let values = attr::string_list_value(
                        cx,
                        argument,
                        meta,
                        "aliases = [\"ProductAdded\"]",
                    )?;
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
                    if let Some((value, _)) =
                        attr::bool_value(cx, argument, meta, "schema = false")?
                    {
                        schema = value;
                    }
                }
                Some("version") => {
                    if let Some((value, span)) =
                        attr::int_value::<u32>(cx, argument, meta, "version = 2")?
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
                Some("oldest_version") => {
                    if let Some((value, span)) =
                        attr::int_value::<u32>(cx, argument, meta, "oldest_version = 2")?
                    {
                        if value == 0 {
                            cx.error_at(
                                span,
                                "event versions start at 1: `oldest_version` is 1 or higher",
                            );
                        } else {
                            oldest_version = Some((value, span));
                        }
                    }
                }
                Some("skipped_versions") => {
                    for (value, span) in
                        attr::int_list_value::<u32>(cx, argument, meta, "skipped_versions = [2]")?
                    {
                        if skipped_versions.iter().any(|(v, _)| *v == value) {
                            cx.error_at(span, format!("version {value} is listed twice"));
                        } else {
                            skipped_versions.push((value, span));
                        }
                    }
                }
                Some("upcast_from") => {
                    let expr: syn::Expr = meta.value()?.parse()?;
                    match attr::peel_expr(&expr) {
                        syn::Expr::Path(p) if p.qself.is_none() => {
                            upcast_from = Some(p.path.clone())
                        }
                        _ => cx.error_spanned_by(argument, form(Some("upcast_from"))),
                    }
                }
                Some("upcast") => {
                    if let Some(upcast) = parse_upcast(cx, argument, meta)? {
                        upcasts.push(upcast);
                    }
                }
                _ => {}
            }
            Ok(())
        });
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
    let (mirror, personal) = parse_mirror(cx, input, &data.fields, schema);
    if !ok {
        return None;
    }
    Some(EventInput {
        ident: &input.ident,
        name,
        explicit_name,
        aliases: aliases.into_iter().map(|(a, _)| a).collect(),
        version: version.map_or(1, |(v, _)| v),
        version_span: version.map(|(_, span)| span),
        oldest_version,
        skipped_versions,
        upcast_from,
        upcasts,
        schema: schema.then_some(mirror),
        personal,
    })
}

/// What is wrong with a stored name or alias, if anything.
fn name_problem(value: &str) -> Option<String> {
    if value.is_empty() {
        Some("cannot be empty".to_owned())
    } else {
        attr::bad_name_char(value)
            .map(|c| format!("cannot contain {c:?}: a stored name has no whitespace or control characters, e.g. `ItemAdded` or `cart.item-added`"))
    }
}

/// The serde attributes whose value is a function or module that reads or writes the field:
/// its shape is then not its type's, and schemars cannot see it.
const SERDE_CODECS: &[&str] = &["with", "serialize_with", "deserialize_with"];

/// Reads the fields and serde attributes the schema is derived from, and the fields'
/// `#[event(...)]` attributes (checked even with `schema = false`): `schema_any`, and the
/// personal-data fields with their subject.
fn parse_mirror<'a>(
    cx: &mut Ctxt,
    input: &'a DeriveInput,
    fields: &'a Fields,
    schema: bool,
) -> (Mirror<'a>, PersonalFields<'a>) {
    let mut personal = PersonalFields::default();
    let mut subject_span: Option<Span> = None;
    let mut first_personal: Option<Span> = None;
    let attrs: Vec<&Attribute> = input
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("serde"))
        .collect();
    let rename_all = container_rename_all(&attrs);
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
        let mut is_personal = None;
        let mut is_subject = None;
        let mut keys = Keys::new("#[event(...)] on a field", FIELD_KEYS);
        for attribute in field.attrs.iter().filter(|a| a.path().is_ident("event")) {
            let result = attribute.parse_nested_meta(|meta| {
                let key = keys.accept(cx, &meta)?;
                let Some(key) = key.as_deref() else {
                    return Ok(());
                };
                if !(meta.input.is_empty() || meta.input.peek(Token![,])) {
                    // Reported, then read as if written right, so that no other error follows.
                    cx.error_spanned_by(
                        &meta.path,
                        format!("write `#[event({key})]`, with no value"),
                    );
                    attr::skip_value(&meta)?;
                }
                let span = Some(meta.path.span());
                match key {
                    "schema_any" => any = span,
                    "personal" => is_personal = span,
                    "subject" => is_subject = span,
                    _ => {}
                }
                Ok(())
            });
            if let Err(e) = result {
                cx.syn_error(e);
            }
        }
        let member = match &field.ident {
            Some(ident) => Member::Named(ident.clone()),
            None => Member::Unnamed(syn::Index {
                index: u32::try_from(index).unwrap_or(u32::MAX),
                span: field.ty.span(),
            }),
        };
        match (is_personal, is_subject) {
            (Some(_), Some(span)) => cx.error_at(
                span,
                "the subject field names whose data the event holds and is stored in clear; it cannot itself be #[event(personal)]: keep the id here and the data in other fields",
            ),
            (Some(span), None) => {
                let first = first_personal.is_none();
                first_personal.get_or_insert(span);
                match &member {
                    Member::Named(ident) => {
                        if let (Err(span), true) = (&rename_all, first) {
                            cx.error_at(
                                *span,
                                "an event with #[event(personal)] fields takes one `rename_all = \"…\"` for both directions: its fields' stored names are bound into their ciphertexts",
                            );
                        }
                        let rule = rename_all.as_ref().ok().and_then(Option::as_deref);
                        let key = stored_key(cx, field, ident, rule);
                        personal.fields.push((member.clone(), key, &field.ty));
                    }
                    Member::Unnamed(_) => cx.error_at(
                        span,
                        "#[event(personal)] needs a struct with named fields: a field's stored name is bound into its ciphertext",
                    ),
                }
            }
            (None, Some(span)) => {
                if subject_span.is_some() {
                    cx.error_at(
                        span,
                        "a second #[event(subject)] field; an event's personal data belongs to one subject",
                    );
                } else {
                    subject_span = Some(span);
                    personal.subject = Some((member.clone(), &field.ty));
                }
            }
            (None, None) => {
                if mentions_personal(&field.ty) {
                    cx.error_spanned_by(
                        &field.ty,
                        "this field holds `Personal` data but is not marked: mark it #[event(personal)] (its type must be `Personal<T>` itself) so that it is encrypted with its subject's key",
                    );
                }
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
                // A personal field's codec is refused as such (see `stored_key`).
                if let Some(codec) = metas
                    .iter()
                    .find(|m| SERDE_CODECS.iter().any(|c| m.path().is_ident(c)))
                {
                    if schema && is_personal.is_none() {
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
        mirror_fields.push(MirrorField {
            member,
            ty: if any.is_some() { None } else { Some(&field.ty) },
            attrs: field_attrs,
        });
    }
    match (first_personal, subject_span) {
        (Some(span), None) => cx.error_at(
            span,
            "a field marked #[event(personal)] needs the subject it belongs to: mark the field of this event that names it (a member or customer id) #[event(subject)]",
        ),
        (None, Some(span)) => cx.error_at(
            span,
            "#[event(subject)] names whose personal data the event holds, but no field is marked #[event(personal)]: mark the personal fields, or remove it",
        ),
        _ => {}
    }
    (
        Mirror {
            attrs,
            default,
            fields: mirror_fields,
            style,
        },
        personal,
    )
}

/// The struct's `#[serde(rename_all = "…")]` rule; `Err` with its span when it is written
/// per direction (`rename_all(serialize = …)`).
fn container_rename_all(attrs: &[&Attribute]) -> Result<Option<String>, Span> {
    let mut rule = None;
    for attribute in attrs {
        for meta in serde_metas(attribute).into_iter().flatten() {
            match &meta {
                Meta::NameValue(nv) if nv.path.is_ident("rename_all") => {
                    if let syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Str(s),
                        ..
                    }) = &nv.value
                    {
                        rule = Some(s.value());
                    }
                }
                Meta::List(list) if list.path.is_ident("rename_all") => {
                    return Err(list.path.span());
                }
                _ => {}
            }
        }
    }
    Ok(rule)
}

/// The name a personal field is stored under: its `#[serde(rename = "…")]`, or its name
/// under the struct's `rename_all` rule (serde's rules, from a snake_case field). The serde
/// attributes that would write the field around `Personal`'s own impl, or read it under
/// another name, are refused.
fn stored_key(cx: &mut Ctxt, field: &syn::Field, ident: &syn::Ident, rule: Option<&str>) -> String {
    let name = ident.to_string();
    let name = name.strip_prefix("r#").unwrap_or(&name).to_owned();
    let mut key = match rule {
        Some(rule) => apply_rename_rule(rule, &name),
        None => name,
    };
    for attribute in field.attrs.iter().filter(|a| a.path().is_ident("serde")) {
        for meta in serde_metas(attribute).into_iter().flatten() {
            match &meta {
                Meta::NameValue(nv) if nv.path.is_ident("rename") => {
                    if let syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Str(s),
                        ..
                    }) = &nv.value
                    {
                        key = s.value();
                    }
                }
                other => {
                    let path = attr::path_text(other.path());
                    if [
                        "rename",
                        "alias",
                        "flatten",
                        "skip",
                        "skip_serializing",
                        "skip_deserializing",
                        "skip_serializing_if",
                        "with",
                        "serialize_with",
                        "deserialize_with",
                        "getter",
                    ]
                    .contains(&path.as_str())
                    {
                        cx.error_spanned_by(
                            other,
                            format!(
                                "a field marked #[event(personal)] is written by `Personal` itself, under one stored name: remove `#[serde({path}…)]` from it"
                            ),
                        );
                    }
                }
            }
        }
    }
    key
}

/// serde's `rename_all` rule applied to a snake_case field name.
fn apply_rename_rule(rule: &str, field: &str) -> String {
    let pascal = || {
        let mut out = String::new();
        let mut upper = true;
        for c in field.chars() {
            if c == '_' {
                upper = true;
            } else if upper {
                out.extend(c.to_uppercase());
                upper = false;
            } else {
                out.push(c);
            }
        }
        out
    };
    match rule {
        "UPPERCASE" | "SCREAMING_SNAKE_CASE" => field.to_ascii_uppercase(),
        "PascalCase" => pascal(),
        "camelCase" => {
            let pascal = pascal();
            let mut chars = pascal.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => pascal,
            }
        }
        "kebab-case" => field.replace('_', "-"),
        "SCREAMING-KEBAB-CASE" => field.replace('_', "-").to_ascii_uppercase(),
        _ => field.to_owned(),
    }
}

/// Whether a type names `Personal` anywhere (`Personal<T>`, `Vec<Personal<T>>`).
fn mentions_personal(ty: &syn::Type) -> bool {
    fn walk(tokens: TokenStream) -> bool {
        tokens.into_iter().any(|tree| match tree {
            proc_macro2::TokenTree::Ident(ident) => ident == "Personal",
            proc_macro2::TokenTree::Group(group) => walk(group.stream()),
            _ => false,
        })
    }
    walk(ty.to_token_stream())
}

/// The items of a `#[serde(...)]` attribute, if it parses as a list of metas.
fn serde_metas(attribute: &Attribute) -> Option<Punctuated<Meta, Token![,]>> {
    attribute
        .parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
        .ok()
}

/// How an argument of `#[event(...)]` is written, for the error at an argument that is not
/// (`None`: one without a key).
fn form(key: Option<&str>) -> String {
    match key {
        Some("name") => "`name` is the event's stored name, a string literal: `name = \"ItemAdded\"`",
        Some("aliases") => "`aliases` lists the event's former stored names as string literals: `aliases = [\"ProductAdded\"]`",
        Some("version") => "`version` is the event's version, an integer literal: `version = 2`",
        Some("oldest_version") => "`oldest_version` is the oldest stored version still read, an integer literal: `oldest_version = 2`",
        Some("skipped_versions") => "`skipped_versions` lists versions never stored, as integer literals: `skipped_versions = [2]`",
        Some("schema") => "`schema` is `true` or `false`: `schema = false`",
        Some("upcast_from") => "`upcast_from` names the event type of the previous version, e.g. `upcast_from = ItemAddedV1`",
        Some("upcast") => "write a payload upcaster as `upcast(from = 1, with = path::to::function)`",
        Some(_) | None => "#[event(...)] takes `key = value` arguments, e.g. #[event(name = \"ItemAdded\", version = 2)]",
    }
    .to_owned()
}

/// How an argument of `upcast(...)` is written.
fn upcast_form(key: Option<&str>) -> String {
    match key {
        Some("from") => "`from` is the stored version the upcaster reads, an integer literal: `from = 1`",
        Some("to") => "`to` is the version the upcaster writes, an integer literal: `to = 2`",
        Some("with") => "`with` names the upcaster function by its path, without quotes: `with = path::to::function`",
        Some(_) | None => "write a payload upcaster as `upcast(from = 1, with = path::to::function)`",
    }
    .to_owned()
}

fn parse_upcast(
    cx: &mut Ctxt,
    argument: &TokenStream,
    meta: &syn::meta::ParseNestedMeta<'_>,
) -> syn::Result<Option<PayloadUpcast>> {
    let span = meta.path.span();
    let mut from = None;
    let mut to = None;
    let mut with = None;
    let mut keys = Keys::new("#[event(upcast(...))]", UPCAST_KEYS);
    if !meta.input.peek(syn::token::Paren) {
        cx.error_spanned_by(argument, form(Some("upcast")));
        attr::skip_value(meta)?;
        return Ok(None);
    }
    let content;
    syn::parenthesized!(content in meta.input);
    let tokens: TokenStream = content.parse()?;
    let before = cx.len();
    attr::parse_arguments(cx, tokens, upcast_form, |cx, inner_argument, inner| {
        match keys.accept(cx, inner)?.as_deref() {
            Some("from") => from = attr::int_value::<u32>(cx, inner_argument, inner, "from = 1")?,
            Some("to") => to = attr::int_value::<u32>(cx, inner_argument, inner, "to = 2")?,
            Some("with") => with = Some(inner.value()?.parse::<Path>()?),
            _ => {}
        }
        Ok(())
    });
    if cx.len() != before {
        return Ok(None);
    }
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
