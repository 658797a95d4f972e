//! Parsing of `#[aggregate(...)]` and of the impl block: arguments, handlers, commands.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::parse::Parser;
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

use super::{Args, Command, Handler, KEYS};

/// Parses the `#[aggregate(...)]` arguments, recording every bad key or value.
pub(super) fn parse_args(cx: &mut Ctxt, tokens: TokenStream) -> Args {
    let mut args = Args::default();
    let mut keys = Keys::new("aggregate", KEYS);
    let parser = syn::meta::parser(|meta| {
        match keys.accept(cx, &meta)?.as_deref() {
            Some("name") => {
                args.name_given = true;
                if let Some((value, span)) = attr::string_value(cx, &meta, "name = \"cart\"")? {
                    if value.is_empty() {
                        cx.error_at(
                            span,
                            "the aggregate name (its stream category) cannot be empty",
                        );
                    } else if let Some(c) =
                        attr::bad_name_char(&value).or(value.chars().find(|c| *c == '-'))
                    {
                        cx.error_at(
                            span,
                            format!("the aggregate name cannot contain {c:?}: it is the stream category, written before the first `-` of a stream id; use e.g. `shopping_cart`"),
                        );
                    } else {
                        args.name = Some(value);
                    }
                }
            }
            Some("snapshot_every") => {
                if let Some((value, span)) =
                    attr::int_value::<u64>(cx, &meta, "snapshot_every = 100")?
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
                    attr::int_value::<u32>(cx, &meta, "snapshot_version = 2")?
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
                let ident: Ident = input.parse()?;
                args.event_enum = Some((vis, ident));
            }
            Some("require_event_names") => {
                if meta.input.is_empty() || meta.input.peek(Token![,]) {
                    args.require_event_names = true;
                } else {
                    cx.error_spanned_by(
                        &meta.path,
                        "write `require_event_names`, with no value: #[aggregate(name = \"cart\", require_event_names)]",
                    );
                    attr::skip_value(&meta)?;
                }
            }
            Some("derive") => {
                let content;
                syn::parenthesized!(content in meta.input);
                let paths = Punctuated::<Path, Token![,]>::parse_terminated(&content)?;
                args.derive = Some(paths.into_iter().collect());
            }
            _ => {}
        }
        Ok(())
    });
    if let Err(e) = parser.parse2(tokens) {
        cx.syn_error(e);
    }
    args
}

/// Removes the `#[apply]` markers from the impl block and returns the checked handlers.
pub(super) fn take_handlers(cx: &mut Ctxt, imp: &mut ItemImpl) -> (Vec<Handler>, usize) {
    let mut handlers = Vec::new();
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
        attrs.retain(|a| !a.path().is_ident("apply"));
        let Some(first) = markers.first() else {
            continue;
        };
        marked += 1;
        if !matches!(first.meta, syn::Meta::Path(_)) {
            cx.error_spanned_by(&first.meta, "#[apply] takes no arguments: write `#[apply]`");
        }
        for extra in &markers[1..] {
            cx.error_spanned_by(extra, "duplicate #[apply]; write it once");
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
    (handlers, marked)
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
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
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
    let event = match &*arg.ty {
        Type::Reference(r) if r.mutability.is_none() => match &*r.elem {
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
            cx.error_spanned_by(
                other,
                format!(
                    "take the event by reference: `&{}`; the fold borrows each stored event",
                    other.to_token_stream()
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

/// Finds the `&self` methods returning `Result<T, _>` with a nameable `T`.
pub(super) fn find_commands(imp: &ItemImpl) -> Vec<Command> {
    let mut commands = Vec::new();
    for item in &imp.items {
        let ImplItem::Fn(f) = item else { continue };
        let sig = &f.sig;
        let shared_self = matches!(
            sig.inputs.first(),
            Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none() && r.colon_token.is_none()
        );
        if !shared_self || !sig.generics.params.is_empty() {
            continue;
        }
        let ReturnType::Type(_, ty) = &sig.output else {
            continue;
        };
        let Some(ok) = generic_argument(ty, "Result") else {
            continue;
        };
        let mut nameable = Nameable(true);
        nameable.visit_type(ok);
        if !nameable.0 {
            continue;
        }
        commands.push(Command { ok: ok.clone() });
        // `Vec<E>` and `Option<E>` of an event type are accepted for the aggregate's own
        // events only: probe the element too.
        if let Some(element) =
            generic_argument(ok, "Vec").or_else(|| generic_argument(ok, "Option"))
        {
            commands.push(Command {
                ok: element.clone(),
            });
        }
    }
    commands
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

/// Whether a type can be named outside its impl block: no `Self`, `impl Trait`, `_` or
/// lifetimes.
struct Nameable(bool);

impl<'ast> Visit<'ast> for Nameable {
    fn visit_lifetime(&mut self, _: &'ast syn::Lifetime) {
        self.0 = false;
    }
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
