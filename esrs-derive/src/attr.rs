//! Parsing helpers shared by the attributes of both macros.

use std::collections::HashSet;

use proc_macro2::{Span, TokenStream, TokenTree};
use syn::meta::ParseNestedMeta;
use syn::{Expr, ExprLit, Lit, Token};

use crate::ctxt::Ctxt;

/// The arguments of an attribute, split at their top-level commas.
pub(crate) fn arguments(tokens: TokenStream) -> Vec<TokenStream> {
    let mut arguments = Vec::new();
    let mut current = TokenStream::new();
    for token in tokens {
        match &token {
            TokenTree::Punct(p) if p.as_char() == ',' => {
                if !current.is_empty() {
                    arguments.push(std::mem::take(&mut current));
                }
            }
            _ => current.extend([token]),
        }
    }
    if !current.is_empty() {
        arguments.push(current);
    }
    arguments
}

/// The key an argument starts with, if it starts with one.
pub(crate) fn argument_key(argument: &TokenStream) -> Option<String> {
    match argument.clone().into_iter().next() {
        Some(TokenTree::Ident(ident)) => Some(ident.to_string()),
        _ => None,
    }
}

/// Parses each argument of an attribute (`key = value`, `key(...)` or `key`) with `each`,
/// which is given the whole argument to report its errors at. An argument that does not
/// start with a key, or that `each` cannot parse, is reported at the whole argument with
/// the text `form` gives for its key (`None` when there is no key), unless `each` already
/// reported it.
pub(crate) fn parse_arguments<F>(
    cx: &mut Ctxt,
    tokens: TokenStream,
    form: impl Fn(Option<&str>) -> String,
    mut each: F,
) where
    F: FnMut(&mut Ctxt, &TokenStream, &ParseNestedMeta<'_>) -> syn::Result<()>,
{
    use syn::parse::Parser as _;
    for argument in arguments(tokens) {
        let Some(key) = argument_key(&argument) else {
            cx.error_spanned_by(&argument, form(None));
            continue;
        };
        let before = cx.len();
        let result = syn::meta::parser(|meta| each(cx, &argument, &meta)).parse2(argument.clone());
        if result.is_err() && cx.len() == before {
            cx.error_spanned_by(&argument, form(Some(&key)));
        }
    }
}

/// Tracks the keys of one attribute so that a repeated key is reported.
pub(crate) struct Keys {
    /// The attribute as messages show it, e.g. `#[event(...)]`.
    attribute: &'static str,
    expected: &'static [&'static str],
    repeatable: &'static [&'static str],
    seen: HashSet<String>,
}

impl Keys {
    pub(crate) fn new(attribute: &'static str, expected: &'static [&'static str]) -> Self {
        Self {
            attribute,
            expected,
            repeatable: &[],
            seen: HashSet::new(),
        }
    }

    /// Allows `keys` to be written more than once.
    pub(crate) fn repeatable(mut self, keys: &'static [&'static str]) -> Self {
        self.repeatable = keys;
        self
    }

    /// The key of `meta` if it is known and seen for the first time; otherwise records an
    /// error, skips the key's value and returns `None`.
    pub(crate) fn accept(
        &mut self,
        cx: &mut Ctxt,
        meta: &ParseNestedMeta<'_>,
    ) -> syn::Result<Option<String>> {
        let key = meta
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_else(|| path_text(&meta.path));
        if !self.expected.contains(&key.as_str()) {
            cx.error_spanned_by(
                &meta.path,
                format!(
                    "unknown key `{key}` in {}; expected {}",
                    self.attribute,
                    one_of(self.expected)
                ),
            );
            skip_value(meta)?;
            return Ok(None);
        }
        if !self.seen.insert(key.clone()) && !self.repeatable.contains(&key.as_str()) {
            cx.error_spanned_by(
                &meta.path,
                format!("duplicate key `{key}` in {}; write it once", self.attribute),
            );
            skip_value(meta)?;
            return Ok(None);
        }
        Ok(Some(key))
    }
}

fn one_of(keys: &[&str]) -> String {
    let quoted: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("one of {} or {last}", rest.join(", ")),
        None => String::from("no keys"),
    }
}

/// The text of a path, as written.
pub(crate) fn path_text(path: &syn::Path) -> String {
    let mut text = String::new();
    if path.leading_colon.is_some() {
        text.push_str("::");
    }
    for (i, segment) in path.segments.iter().enumerate() {
        if i > 0 {
            text.push_str("::");
        }
        text.push_str(&segment.ident.to_string());
    }
    text
}

/// Skips the value of a key: `= tokens` or `(tokens)`, up to the next top-level comma.
pub(crate) fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    while !meta.input.is_empty() && !meta.input.peek(Token![,]) {
        meta.input.parse::<proc_macro2::TokenTree>()?;
    }
    Ok(())
}

/// Parses `= "text"`.
pub(crate) fn string_value(
    cx: &mut Ctxt,
    argument: &TokenStream,
    meta: &ParseNestedMeta<'_>,
    example: &str,
) -> syn::Result<Option<(String, Span)>> {
    let expr: Expr = meta.value()?.parse()?;
    match peel_expr(&expr) {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Ok(Some((s.value(), s.span()))),
        _ => {
            cx.error_spanned_by(
                argument,
                format!("expected a string literal, e.g. `{example}`"),
            );
            Ok(None)
        }
    }
}

/// Parses `= N` with an integer literal that fits `T`.
pub(crate) fn int_value<T>(
    cx: &mut Ctxt,
    argument: &TokenStream,
    meta: &ParseNestedMeta<'_>,
    example: &str,
) -> syn::Result<Option<(T, Span)>>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let expr: Expr = meta.value()?.parse()?;
    match peel_expr(&expr) {
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => match i.base10_parse::<T>() {
            Ok(value) => Ok(Some((value, i.span()))),
            Err(e) => {
                cx.error_spanned_by(argument, format!("{e}; expected e.g. `{example}`"));
                Ok(None)
            }
        },
        _ => {
            cx.error_spanned_by(
                argument,
                format!("expected an integer literal, e.g. `{example}`"),
            );
            Ok(None)
        }
    }
}

/// `expr` without the invisible group around a `macro_rules!` fragment (`$v:literal`,
/// `$path:path`), which the compiler passes to the macro as written.
pub(crate) fn peel_expr(mut expr: &Expr) -> &Expr {
    while let Expr::Group(group) = expr {
        expr = &group.expr;
    }
    expr
}

/// `ty` without the invisible group around a `macro_rules!` fragment (`$ty:ty`).
pub(crate) fn peel_type(mut ty: &syn::Type) -> &syn::Type {
    while let syn::Type::Group(group) = ty {
        ty = &group.elem;
    }
    ty
}

/// Characters a stored name or category must not contain.
pub(crate) fn bad_name_char(name: &str) -> Option<char> {
    name.chars().find(|c| c.is_control() || c.is_whitespace())
}

/// Parses `= true` or `= false`.
pub(crate) fn bool_value(
    cx: &mut Ctxt,
    argument: &TokenStream,
    meta: &ParseNestedMeta<'_>,
    example: &str,
) -> syn::Result<Option<(bool, Span)>> {
    let expr: Expr = meta.value()?.parse()?;
    match peel_expr(&expr) {
        Expr::Lit(ExprLit {
            lit: Lit::Bool(b), ..
        }) => Ok(Some((b.value, b.span))),
        _ => {
            cx.error_spanned_by(
                argument,
                format!("expected `true` or `false`, e.g. `{example}`"),
            );
            Ok(None)
        }
    }
}

/// Parses `= ["a", "b"]`: each string with its span (elements that are not strings are
/// reported and left out).
pub(crate) fn string_list_value(
    cx: &mut Ctxt,
    argument: &TokenStream,
    meta: &ParseNestedMeta<'_>,
    example: &str,
) -> syn::Result<Vec<(String, Span)>> {
    let expr: Expr = meta.value()?.parse()?;
    let Expr::Array(array) = peel_expr(&expr) else {
        cx.error_spanned_by(
            argument,
            format!("expected a list of string literals, e.g. `{example}`"),
        );
        return Ok(Vec::new());
    };
    // The good strings are kept beside the errors, so that their own checks run too.
    let mut values = Vec::new();
    for element in &array.elems {
        match peel_expr(element) {
            Expr::Lit(ExprLit {
                lit: Lit::Str(s), ..
            }) => values.push((s.value(), s.span())),
            other => {
                cx.error_spanned_by(
                    other,
                    format!("expected a string literal, e.g. `{example}`"),
                );
            }
        }
    }
    Ok(values)
}

/// Parses `= [1, 2]`: each integer that fits `T`, with its span (other elements are
/// reported and left out).
pub(crate) fn int_list_value<T>(
    cx: &mut Ctxt,
    argument: &TokenStream,
    meta: &ParseNestedMeta<'_>,
    example: &str,
) -> syn::Result<Vec<(T, Span)>>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let expr: Expr = meta.value()?.parse()?;
    let Expr::Array(array) = peel_expr(&expr) else {
        cx.error_spanned_by(
            argument,
            format!("expected a list of integer literals, e.g. `{example}`"),
        );
        return Ok(Vec::new());
    };
    let mut values = Vec::new();
    for element in &array.elems {
        match peel_expr(element) {
            Expr::Lit(ExprLit {
                lit: Lit::Int(i), ..
            }) => match i.base10_parse::<T>() {
                Ok(value) => values.push((value, i.span())),
                Err(e) => cx.error_spanned_by(i, format!("{e}; expected e.g. `{example}`")),
            },
            other => cx.error_spanned_by(
                other,
                format!("expected an integer literal, e.g. `{example}`"),
            ),
        }
    }
    Ok(values)
}
