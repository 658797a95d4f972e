//! Parsing of `#[aggregate(...)]` and of the impl block: arguments, handlers, commands.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{
    FnArg, Ident, ImplItem, ImplItemFn, ItemImpl, Path, ReturnType, Token, Type, TypePath,
    Visibility,
};

use crate::attr::{self, Keys};
use crate::ctxt::Ctxt;
use crate::fingerprint;

use super::{Args, Command, Handler, KEYS, Leaf};

/// Parses the `#[aggregate(...)]` arguments, recording every bad key or value.
pub(super) fn parse_args(cx: &mut Ctxt, tokens: TokenStream) -> Args {
    let mut args = Args::default();
    let mut keys = Keys::new("#[aggregate(...)]", KEYS);
    // `#[aggregate("cart")]`: the category without its key, reported as such.
    let positional_name = attr::arguments(tokens.clone()).iter().any(|argument| {
        matches!(
            syn::parse2::<syn::Lit>(argument.clone()),
            Ok(syn::Lit::Str(_))
        )
    });
    args.name_given |= positional_name;
    attr::parse_arguments(cx, tokens, form, |cx, argument, meta| {
        match keys.accept(cx, meta)?.as_deref() {
            Some("name") => {
                args.name_given = true;
                if let Some((value, span)) =
                    attr::string_value(cx, argument, meta, "name = \"cart\"")?
                {
                    if value.is_empty() {
                        cx.error_at(
                            span,
                            "the aggregate name (its stream category) cannot be empty",
                        );
                    } else if let Some(c) = attr::bad_name_char(&value) {
                        cx.error_at(
                            span,
                            format!("the aggregate name cannot contain {c:?}: it is the stream category, with no whitespace or control characters; use e.g. `shopping_cart`"),
                        );
                    } else if value.contains('-') {
                        cx.error_at(
                            span,
                            "the aggregate name cannot contain '-': it is the stream category, written before the first `-` of a stream id; use e.g. `shopping_cart`",
                        );
                    } else {
                        args.name = Some(value);
                    }
                }
            }
            Some("snapshot_every") => {
                if let Some((value, span)) =
                    attr::int_value::<u64>(cx, argument, meta, "snapshot_every = 100")?
                {
                    if value == 0 {
                        cx.error_at(
                            span,
                            "`snapshot_every` is the number of events between snapshots: use 1 or more, or remove it to never snapshot",
                        );
                    } else {
                        args.snapshot_every = Some((value, meta.path.span()));
                    }
                }
            }
            Some("snapshot_version") => {
                if let Some((value, span)) =
                    attr::int_value::<u32>(cx, argument, meta, "snapshot_version = 2")?
                {
                    if value == 0 {
                        cx.error_at(
                            span,
                            "snapshot versions start at 1: write `snapshot_version = 1` or higher",
                        );
                    } else {
                        args.snapshot_version = Some((value, meta.path.span()));
                    }
                }
            }
            Some("event_enum") => {
                let input = meta.value()?;
                let vis: Visibility = input.parse()?;
                args.event_enum = Some((vis, input.parse::<Ident>()?));
            }
            Some("require_event_names") => {
                if meta.input.is_empty() || meta.input.peek(Token![,]) {
                    args.require_event_names = true;
                } else {
                    cx.error_spanned_by(argument, form(Some("require_event_names")));
                    attr::skip_value(meta)?;
                }
            }
            Some("derive") => {
                if !meta.input.peek(syn::token::Paren) {
                    cx.error_spanned_by(argument, form(Some("derive")));
                    attr::skip_value(meta)?;
                    return Ok(());
                }
                let content;
                syn::parenthesized!(content in meta.input);
                let paths = Punctuated::<Path, Token![,]>::parse_terminated(&content)?;
                args.derive = Some(paths.into_iter().collect());
            }
            _ => {}
        }
        Ok(())
    });
    args
}

/// How an argument of `#[aggregate(...)]` is written, for the error at an argument that is
/// not (`None`: one without a key).
fn form(key: Option<&str>) -> String {
    match key {
        Some("name") => "`name` is the aggregate's stream category, a string literal: `name = \"cart\"`",
        Some("snapshot_every") => "`snapshot_every` is the number of events between snapshots, an integer literal: `snapshot_every = 100`",
        Some("snapshot_version") => "`snapshot_version` is the snapshot layout's version, an integer literal: `snapshot_version = 2`",
        Some("event_enum") => "`event_enum` is the name of the enum to generate, with an optional visibility: `event_enum = CartEvents` or `event_enum = pub(crate) CartEvents`",
        Some("require_event_names") => "write `require_event_names`, with no value: #[aggregate(name = \"cart\", require_event_names)]",
        Some("derive") => "write the event enum's derives in parentheses, as paths: `derive(Debug, Clone)`",
        Some(_) | None => "#[aggregate(...)] takes `key = value` arguments, the stream category first: #[aggregate(name = \"cart\")]",
    }
    .to_owned()
}

/// What the impl block holds besides its other items: the checked handlers, how many items
/// were marked `#[apply]`, the canonical text of the `#[helper]` methods, and the names of
/// the methods that are neither.
pub(super) struct Items {
    pub(super) handlers: Vec<Handler>,
    pub(super) marked: usize,
    /// How many `&mut self` methods were refused (perhaps handlers without `#[apply]`).
    pub(super) refused: usize,
    pub(super) helpers: Vec<String>,
    pub(super) others: Vec<Ident>,
}

/// Removes the `#[apply]` and `#[helper]` markers from the impl block and returns the
/// checked handlers; refuses `&mut self` methods that are neither.
pub(super) fn take_handlers(cx: &mut Ctxt, imp: &mut ItemImpl) -> Items {
    let mut handlers = Vec::new();
    let mut refused = 0;
    let mut helpers = Vec::new();
    let mut others = Vec::new();
    let mut marked = 0;
    for item in &mut imp.items {
        let attrs = match item {
            ImplItem::Fn(f) => &mut f.attrs,
            ImplItem::Const(c) => &mut c.attrs,
            ImplItem::Type(t) => &mut t.attrs,
            ImplItem::Macro(m) => &mut m.attrs,
            _ => continue,
        };
        let markers: Vec<syn::Attribute> = attrs
            .iter()
            .filter(|a| a.path().is_ident("apply"))
            .cloned()
            .collect();
        let helper_marks: Vec<syn::Attribute> = attrs
            .iter()
            .filter(|a| a.path().is_ident("helper"))
            .cloned()
            .collect();
        attrs.retain(|a| !a.path().is_ident("apply") && !a.path().is_ident("helper"));
        let Some(first) = markers.first() else {
            if let ImplItem::Fn(f) = item {
                match check_method(cx, f, &helper_marks) {
                    Method::Helper(code) => helpers.push(code),
                    Method::Other => others.push(f.sig.ident.clone()),
                    Method::Refused => refused += 1,
                }
            } else if let Some(mark) = helper_marks.first() {
                cx.error_spanned_by(
                    mark,
                    "#[helper] marks a `&mut self` method that the #[apply] handlers call: remove it here",
                );
            }
            continue;
        };
        marked += 1;
        if !matches!(first.meta, syn::Meta::Path(_)) {
            cx.error_spanned_by(&first.meta, "#[apply] takes no arguments: write `#[apply]`");
        }
        for extra in &markers[1..] {
            cx.error_spanned_by(extra, "duplicate #[apply]; write it once");
        }
        if let Some(mark) = helper_marks.first() {
            cx.error_spanned_by(
                mark,
                "an #[apply] handler is not a #[helper]: #[helper] marks a `&mut self` method that the handlers call; remove it",
            );
        }
        if let ImplItem::Fn(f) = item {
            for cfg in f
                .attrs
                .iter()
                .filter(|a| a.path().is_ident("cfg") || a.path().is_ident("cfg_attr"))
            {
                cx.error_spanned_by(
                    cfg,
                    "an #[apply] handler cannot be conditional: in a build without it, the stored events of its type would not load; keep the handler in every build, and put the #[cfg] on the commands that return its event",
                );
            }
        }
        match item {
            ImplItem::Fn(f) => {
                if let Some(handler) = check_handler(cx, f) {
                    handlers.push(handler);
                }
            }
            other => cx.error_spanned_by(
                first,
                format!(
                    "#[apply] goes on a method `fn(&mut self, event: &SomeEvent)`, not on {}",
                    match other {
                        ImplItem::Const(_) => "a constant",
                        ImplItem::Type(_) => "a type",
                        _ => "a macro",
                    }
                ),
            ),
        }
    }
    Items {
        handlers,
        marked,
        refused,
        helpers,
        others,
    }
}

/// Checks a method that is not a handler: a `&mut self` method changes the state without an
/// event unless it is a `#[helper]` of the handlers, whose canonical text is part of the
/// fold's fingerprint.
enum Method {
    /// A `#[helper]`, with its canonical text.
    Helper(String),
    /// A `&mut self` method refused.
    Refused,
    /// Any other method.
    Other,
}

fn check_method(cx: &mut Ctxt, f: &ImplItemFn, marks: &[syn::Attribute]) -> Method {
    let mutates = matches!(
        f.sig.inputs.first(),
        Some(FnArg::Receiver(r)) if matches!(&*r.ty, Type::Reference(rf) if rf.mutability.is_some())
    );
    let Some(mark) = marks.first() else {
        if let (true, Some(FnArg::Receiver(r))) = (mutates, f.sig.inputs.first()) {
            cx.error_spanned_by(
                r,
                format!(
                    "`{}` takes `&mut self` but is not an #[apply] handler: it would change the state without an event, and a reload would lose the change; make it a command that takes `&self` and returns the events (e.g. `Result<ItemAdded, _>`), which the handlers apply. If it applies an event, mark it #[apply]; if the handlers call it, mark it #[helper]",
                    f.sig.ident
                ),
            );
            return Method::Refused;
        }
        return Method::Other;
    };
    if !matches!(mark.meta, syn::Meta::Path(_)) {
        cx.error_spanned_by(
            &mark.meta,
            "#[helper] takes no arguments: write `#[helper]`",
        );
    }
    for extra in &marks[1..] {
        cx.error_spanned_by(extra, "duplicate #[helper]; write it once");
    }
    if !mutates {
        cx.error_spanned_by(
            mark,
            format!(
                "#[helper] marks a `&mut self` method that the #[apply] handlers call, and `{}` does not take `&mut self`: remove #[helper]",
                f.sig.ident
            ),
        );
        return Method::Other;
    }
    let (sig, block) = (&f.sig, &f.block);
    Method::Helper(fingerprint::canonical_text(quote!(#sig #block)))
}

const SIGNATURE: &str = "`fn name(&mut self, event: &SomeEvent)`";

fn check_handler(cx: &mut Ctxt, f: &ImplItemFn) -> Option<Handler> {
    let sig = &f.sig;
    let mut ok = true;
    let qualifiers: [(Option<TokenStream>, &str); 4] = [
        (sig.constness.map(|t| t.to_token_stream()), "const"),
        (sig.asyncness.map(|t| t.to_token_stream()), "async"),
        (sig.unsafety.map(|t| t.to_token_stream()), "unsafe"),
        (sig.abi.as_ref().map(|t| t.to_token_stream()), "extern"),
    ];
    for (token, word) in qualifiers {
        if let Some(token) = token {
            cx.error_spanned_by(
                token,
                format!("an #[apply] handler is a plain {SIGNATURE}: remove `{word}`"),
            );
            ok = false;
        }
    }
    if let (true, Some(where_clause)) = (sig.generics.params.is_empty(), &sig.generics.where_clause)
    {
        cx.error_spanned_by(
            where_clause,
            format!(
                "an #[apply] handler has no where clause: it applies one event type, {SIGNATURE}"
            ),
        );
        ok = false;
    } else if !sig.generics.params.is_empty() {
        cx.error_spanned_by(
            &sig.generics,
            format!(
                "an #[apply] handler cannot be generic: it applies one event type, {SIGNATURE}"
            ),
        );
        ok = false;
    }
    let mut inputs = sig.inputs.iter();
    match inputs.next() {
        Some(FnArg::Receiver(r))
            if r.reference.is_some() && r.mutability.is_some() && r.colon_token.is_none() => {}
        Some(FnArg::Receiver(r)) => {
            cx.error_spanned_by(
                r,
                format!("an #[apply] handler takes `&mut self`: it changes the state by applying one event, {SIGNATURE}"),
            );
            ok = false;
        }
        _ => {
            cx.error_spanned_by(
                &sig.ident,
                format!(
                    "an #[apply] handler is a method taking `&mut self` and the event: {SIGNATURE}"
                ),
            );
            return None;
        }
    }
    let rest: Vec<&FnArg> = inputs.collect();
    let [FnArg::Typed(arg)] = rest.as_slice() else {
        cx.error_at(
            sig.paren_token.span.join(),
            format!("an #[apply] handler takes exactly one event after `&mut self`: {SIGNATURE}"),
        );
        return None;
    };
    let event = match attr::peel_type(&arg.ty) {
        Type::Reference(r) if r.mutability.is_none() => match attr::peel_type(&r.elem) {
            Type::Path(p) if p.qself.is_none() => Some(p.clone()),
            other => {
                cx.error_spanned_by(
                    other,
                    format!("the event of an #[apply] handler is a named event type: {SIGNATURE}"),
                );
                None
            }
        },
        Type::Reference(r) => {
            cx.error_spanned_by(
                r,
                "take the event by shared reference (`&E`, not `&mut E`): an event is a fact and is never changed",
            );
            None
        }
        other => {
            // `Box<E>` and the like hold the event: suggest a reference to it.
            let inner = match other {
                Type::Path(p) => p
                    .path
                    .segments
                    .last()
                    .filter(|s| ["Box", "Rc", "Arc"].contains(&s.ident.to_string().as_str()))
                    .and_then(|s| match &s.arguments {
                        syn::PathArguments::AngleBracketed(a) => a.args.first(),
                        _ => None,
                    })
                    .and_then(|a| match a {
                        syn::GenericArgument::Type(t) => Some(t),
                        _ => None,
                    }),
                _ => None,
            };
            cx.error_spanned_by(
                other,
                format!(
                    "take the event by reference: `&{}`; the fold borrows each stored event",
                    type_text(inner.unwrap_or(other))
                ),
            );
            None
        }
    };
    match &sig.output {
        ReturnType::Default => {}
        ReturnType::Type(_, ty) if matches!(&**ty, Type::Tuple(t) if t.elems.is_empty()) => {}
        ReturnType::Type(_, ty) => {
            cx.error_spanned_by(
                ty,
                "an #[apply] handler returns nothing: applying an event cannot fail; validate in the command that returns the event",
            );
            ok = false;
        }
    }
    let event = event?;
    if !ok {
        return None;
    }
    let variant = event.path.segments.last()?.ident.clone();
    let block = &f.block;
    let code = fingerprint::canonical_text(quote!(#sig #block));
    Some(Handler {
        method: sig.ident.clone(),
        event,
        variant,
        code,
    })
}

/// Reads the return type of every method that is not a handler or a helper: the types it
/// names (each checked, when it is an event, to be one of the aggregate's) and, when the
/// whole type can be named, the type itself (checked, when it is a `Result` of events, to
/// hold them in a form the repository takes). `Self` is read as the state type.
pub(super) fn find_commands(imp: &ItemImpl, others: &[Ident]) -> Vec<Command> {
    let self_ty = imp.self_ty.to_token_stream();
    let mut commands = Vec::new();
    for item in &imp.items {
        let ImplItem::Fn(f) = item else { continue };
        let sig = &f.sig;
        if !others.contains(&sig.ident) {
            continue;
        }
        let ReturnType::Type(_, ty) = &sig.output else {
            continue;
        };
        let Ok(ty) = syn::parse2::<Type>(replace_self(ty.to_token_stream(), &self_ty)) else {
            continue;
        };
        let mut leaves = Vec::new();
        collect_leaves(&ty, false, &mut leaves);
        if leaves.is_empty() {
            continue;
        }
        let params = replace_self(sig.generics.to_token_stream(), &self_ty);
        let where_clause = replace_self(sig.generics.where_clause.to_token_stream(), &self_ty);
        let ok_span = generic_argument(&ty, "Result").map_or_else(|| spans_of(&ty), spans_of);
        commands.push(Command {
            params,
            where_clause,
            whole: nameable(&ty).then(|| (ty.clone(), ok_span)),
            leaves,
        });
    }
    commands
}

/// `tokens` with every `Self` replaced by the state type.
fn replace_self(tokens: TokenStream, self_ty: &TokenStream) -> TokenStream {
    tokens
        .into_iter()
        .map(|tree| match tree {
            proc_macro2::TokenTree::Ident(ident) if ident == "Self" => {
                let mut group =
                    proc_macro2::Group::new(proc_macro2::Delimiter::None, self_ty.clone());
                group.set_span(ident.span());
                proc_macro2::TokenTree::Group(group)
            }
            proc_macro2::TokenTree::Group(group) => {
                let mut new = proc_macro2::Group::new(
                    group.delimiter(),
                    replace_self(group.stream(), self_ty),
                );
                new.set_span(group.span());
                proc_macro2::TokenTree::Group(new)
            }
            other => other,
        })
        .collect()
}

/// The spans of the first and the last token of `tokens`, so that a check can be reported
/// over all of them.
fn spans_of<T: ToTokens>(tokens: T) -> (Span, Span) {
    let tokens: Vec<proc_macro2::TokenTree> = tokens.to_token_stream().into_iter().collect();
    let first = tokens
        .first()
        .map_or_else(Span::call_site, proc_macro2::TokenTree::span);
    let last = tokens.last().map_or(first, proc_macro2::TokenTree::span);
    (first, last)
}

/// Collects the nameable path types in `ty`, outside the error type of a `Result<T, E>`
/// written as such; `opaque` is whether they are inside an `impl Trait`.
fn collect_leaves(ty: &Type, opaque: bool, out: &mut Vec<Leaf>) {
    match ty {
        Type::Path(TypePath { qself, path }) => {
            if nameable(ty) {
                out.push(Leaf {
                    ty: ty.clone(),
                    spans: spans_of(ty),
                    opaque,
                });
            }
            if let Some(qself) = qself {
                collect_leaves(&qself.ty, opaque, out);
            }
            collect_path(path, opaque, out);
        }
        Type::Array(a) => collect_leaves(&a.elem, opaque, out),
        Type::Slice(s) => collect_leaves(&s.elem, opaque, out),
        Type::Reference(r) => collect_leaves(&r.elem, opaque, out),
        Type::Ptr(p) => collect_leaves(&p.elem, opaque, out),
        Type::Paren(p) => collect_leaves(&p.elem, opaque, out),
        Type::Group(g) => collect_leaves(&g.elem, opaque, out),
        Type::Tuple(t) => t.elems.iter().for_each(|e| collect_leaves(e, opaque, out)),
        Type::ImplTrait(t) => collect_bounds(&t.bounds, true, out),
        Type::TraitObject(t) => collect_bounds(&t.bounds, opaque, out),
        _ => {}
    }
}

fn collect_bounds(
    bounds: &Punctuated<syn::TypeParamBound, Token![+]>,
    opaque: bool,
    out: &mut Vec<Leaf>,
) {
    for bound in bounds {
        if let syn::TypeParamBound::Trait(t) = bound {
            collect_path(&t.path, opaque, out);
        }
    }
}

fn collect_path(path: &Path, opaque: bool, out: &mut Vec<Leaf>) {
    let count = path.segments.len();
    for (i, segment) in path.segments.iter().enumerate() {
        let is_result = i + 1 == count && segment.ident == "Result";
        match &segment.arguments {
            syn::PathArguments::AngleBracketed(args) => {
                for (j, arg) in args.args.iter().enumerate() {
                    match arg {
                        // The error type of a `Result` is not where events are returned.
                        syn::GenericArgument::Type(_) if is_result && j == 1 => {}
                        syn::GenericArgument::Type(ty) => collect_leaves(ty, opaque, out),
                        syn::GenericArgument::AssocType(assoc) => {
                            collect_leaves(&assoc.ty, opaque, out);
                        }
                        _ => {}
                    }
                }
            }
            syn::PathArguments::Parenthesized(args) => {
                args.inputs
                    .iter()
                    .for_each(|t| collect_leaves(t, opaque, out));
                if let ReturnType::Type(_, t) = &args.output {
                    collect_leaves(t, opaque, out);
                }
            }
            syn::PathArguments::None => {}
        }
    }
}

/// The first type argument of `ty` when `ty` is a path ending in `name<…>`.
fn generic_argument<'a>(ty: &'a Type, name: &str) -> Option<&'a Type> {
    let Type::Path(TypePath { qself: None, path }) = ty else {
        return None;
    };
    let last = path.segments.last()?;
    if last.ident != name {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        syn::GenericArgument::Type(ty) => Some(ty),
        _ => None,
    }
}

/// Whether a type can be named in a function beside the impl block (with the method's
/// generics): no `impl Trait`, `_`, macro or `Self`.
fn nameable(ty: &Type) -> bool {
    let mut nameable = Nameable(true);
    nameable.visit_type(ty);
    nameable.0
}

struct Nameable(bool);

impl<'ast> Visit<'ast> for Nameable {
    fn visit_type_impl_trait(&mut self, _: &'ast syn::TypeImplTrait) {
        self.0 = false;
    }
    fn visit_type_infer(&mut self, _: &'ast syn::TypeInfer) {
        self.0 = false;
    }
    fn visit_type_macro(&mut self, _: &'ast syn::TypeMacro) {
        self.0 = false;
    }
    fn visit_path_segment(&mut self, segment: &'ast syn::PathSegment) {
        if segment.ident == "Self" {
            self.0 = false;
        }
        syn::visit::visit_path_segment(self, segment);
    }
}

/// A type as a user writes it: `Vec<ItemAdded>`, not `Vec < ItemAdded >`.
fn type_text(ty: &Type) -> String {
    let text = ty.to_token_stream().to_string();
    [
        (" < ", "<"),
        ("< ", "<"),
        (" >", ">"),
        (" :: ", "::"),
        (" ,", ","),
        ("& ", "&"),
    ]
    .iter()
    .fold(text, |text, (from, to)| text.replace(from, to))
}

/// Removes the `#[apply]` and `#[helper]` markers, which no other macro reads, from an impl
/// block that is emitted as it is beside an error.
pub(super) fn strip_markers(imp: &mut ItemImpl) {
    for item in &mut imp.items {
        if let ImplItem::Fn(f) = item {
            f.attrs
                .retain(|a| !a.path().is_ident("apply") && !a.path().is_ident("helper"));
        }
    }
}
