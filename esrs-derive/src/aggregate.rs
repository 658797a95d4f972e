//! `#[aggregate]`: parse the attribute and the impl block's `#[apply]` handlers, check them,
//! expand the event enum, its conversions, the `Aggregate` impl and the compile-time checks.

use std::collections::HashMap;

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{
    FnArg, Ident, ImplItem, ImplItemFn, Item, ItemImpl, Path, ReturnType, Type, TypePath,
    Visibility,
};

use crate::attr::{self, Keys};
use crate::ctxt::Ctxt;
use crate::fingerprint;

const KEYS: &[&str] = &[
    "name",
    "snapshot_every",
    "snapshot_version",
    "event_enum",
    "derive",
];

/// The parsed `#[aggregate(...)]` arguments.
#[derive(Default)]
struct Args {
    name: Option<String>,
    /// Whether a `name` key was written (perhaps with a refused value).
    name_given: bool,
    snapshot_every: Option<(u64, Span)>,
    snapshot_version: Option<(u32, Span)>,
    event_enum: Option<(Visibility, Ident)>,
    derive: Option<Vec<Path>>,
}

/// One `#[apply]` handler.
struct Handler {
    method: Ident,
    event: TypePath,
    variant: Ident,
    code: String,
}

/// A `&self` method returning `Result<T, _>` whose `T` is checked to be one of the
/// aggregate's events when it is an event type at all.
struct Command {
    ok: Type,
}

/// Expands `#[aggregate]`.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut cx = Ctxt::default();
    let args = parse_args(&mut cx, args);
    let item: Item = match syn::parse2(item.clone()) {
        Ok(item) => item,
        Err(e) => {
            cx.syn_error(e);
            let errors = cx.into_compile_errors();
            return quote!(#errors #item);
        }
    };
    let mut imp = match item {
        Item::Impl(imp) if imp.trait_.is_none() => imp,
        Item::Impl(imp) => {
            if let Some((_, path, _)) = &imp.trait_ {
                cx.error_spanned_by(
                    path,
                    "#[aggregate] goes on the inherent impl block of the state type (`impl Cart { … }`), not on a trait impl",
                );
            }
            let errors = cx.into_compile_errors();
            return quote!(#errors #imp);
        }
        other => {
            let at: TokenStream = match &other {
                Item::Struct(s) => s.ident.to_token_stream(),
                Item::Enum(e) => e.ident.to_token_stream(),
                Item::Fn(f) => f.sig.ident.to_token_stream(),
                Item::Trait(t) => t.ident.to_token_stream(),
                _ => other.to_token_stream(),
            };
            cx.error_spanned_by(
                at,
                "#[aggregate] goes on the inherent impl block of the state type, holding its #[apply] handlers: `#[aggregate(name = \"cart\")] impl Cart { … }`",
            );
            let errors = cx.into_compile_errors();
            return quote!(#errors #other);
        }
    };

    if !imp.generics.params.is_empty() {
        cx.error_spanned_by(
            &imp.generics,
            "an aggregate cannot be generic: its stream category and events are fixed; use #[aggregate] on a concrete type",
        );
    }
    let self_ident = match &*imp.self_ty {
        Type::Path(TypePath { qself: None, path }) => path.segments.last().map(|s| s.ident.clone()),
        _ => None,
    };
    let Some(self_ident) = self_ident else {
        cx.error_spanned_by(
            &imp.self_ty,
            "#[aggregate] goes on the impl block of a named state type: `impl Cart { … }`",
        );
        let errors = cx.into_compile_errors();
        return quote!(#errors #imp);
    };

    let handlers = take_handlers(&mut cx, &mut imp);
    let commands = find_commands(&imp);
    check(&mut cx, &args, &handlers, &imp);

    let (vis, enum_ident) = match &args.event_enum {
        Some((Visibility::Inherited, ident)) => (quote!(pub), ident.clone()),
        Some((vis, ident)) => (vis.to_token_stream(), ident.clone()),
        None => (quote!(pub), format_ident!("{}Event", self_ident)),
    };
    if !cx.is_ok() {
        // The user's impl (without the `#[apply]` markers) and a bare event enum, so that
        // the errors above are not followed by a cascade about missing items.
        let variants = handlers.iter().map(|h| {
            let (variant, event) = (&h.variant, &h.event);
            quote!(#variant(#event))
        });
        let errors = cx.into_compile_errors();
        return quote! {
            #errors
            #imp
            #[allow(dead_code, missing_docs)]
            #vis enum #enum_ident { #(#variants),* }
        };
    }
    let name = args.name.clone().unwrap_or_default();
    let generated = Generated {
        args: &args,
        name: &name,
        self_ty: &imp.self_ty,
        self_text: self_ident.to_string(),
        vis,
        enum_ident,
        handlers: &handlers,
        commands: &commands,
    };
    let expanded = generated.expand();
    quote! {
        #imp
        #expanded
    }
}

fn parse_args(cx: &mut Ctxt, tokens: TokenStream) -> Args {
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
            Some("derive") => {
                let mut paths = Vec::new();
                meta.parse_nested_meta(|d| {
                    paths.push(d.path);
                    Ok(())
                })?;
                args.derive = Some(paths);
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
fn take_handlers(cx: &mut Ctxt, imp: &mut ItemImpl) -> Vec<Handler> {
    let mut handlers = Vec::new();
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
    handlers
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

fn check(cx: &mut Ctxt, args: &Args, handlers: &[Handler], imp: &ItemImpl) {
    if !args.name_given {
        cx.error_at(
            Span::call_site(),
            "missing `name`, the aggregate's stream category: write e.g. #[aggregate(name = \"cart\")]",
        );
    }
    if let (Some((_, span)), None) = (&args.snapshot_version, &args.snapshot_every) {
        cx.error_at(
            *span,
            "`snapshot_version` has no effect without `snapshot_every = N`: add it, or remove `snapshot_version`",
        );
    }
    if handlers.is_empty() {
        cx.error_spanned_by(
            &imp.self_ty,
            "an aggregate needs at least one #[apply] handler, e.g. `#[apply] fn added(&mut self, event: &ItemAdded) { … }`",
        );
    }
    let mut seen: HashMap<String, &Handler> = HashMap::new();
    let mut variants: HashMap<String, &Handler> = HashMap::new();
    for handler in handlers {
        let text = fingerprint::canonical_text(handler.event.to_token_stream());
        if let Some(first) = seen.get(&text) {
            cx.error_spanned_by(
                &handler.event,
                format!(
                    "a second #[apply] handler for `{}` (the first is `{}`): an event type has one handler; merge them",
                    attr::path_text(&handler.event.path),
                    first.method
                ),
            );
            continue;
        }
        seen.insert(text, handler);
        let variant = handler.variant.to_string();
        if let Some(first) = variants.get(&variant) {
            cx.error_spanned_by(
                &handler.event,
                format!(
                    "the event types `{}` and `{}` would both be the variant `{variant}` of the event enum; rename one of the types",
                    attr::path_text(&first.event.path),
                    attr::path_text(&handler.event.path),
                ),
            );
            continue;
        }
        variants.insert(variant, handler);
    }
}

/// Finds the `&self` methods returning `Result<T, _>` with a nameable `T`.
fn find_commands(imp: &ItemImpl) -> Vec<Command> {
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
        let Type::Path(TypePath { qself: None, path }) = &**ty else {
            continue;
        };
        let Some(last) = path.segments.last() else {
            continue;
        };
        if last.ident != "Result" {
            continue;
        }
        let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
            continue;
        };
        let Some(syn::GenericArgument::Type(ok)) = args.args.first() else {
            continue;
        };
        let mut nameable = Nameable(true);
        nameable.visit_type(ok);
        if nameable.0 {
            commands.push(Command { ok: ok.clone() });
        }
    }
    commands
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

struct Generated<'a> {
    args: &'a Args,
    name: &'a str,
    self_ty: &'a Type,
    self_text: String,
    vis: TokenStream,
    enum_ident: Ident,
    handlers: &'a [Handler],
    commands: &'a [Command],
}

impl Generated<'_> {
    fn expand(&self) -> TokenStream {
        let enum_def = self.event_enum();
        let event_set = self.event_set();
        let conversions = self.conversions();
        let aggregate = self.aggregate();
        let checks = self.checks();
        let self_ty = self.self_ty;
        quote! {
            #enum_def
            const _: () = {
                #event_set
                #conversions
                #aggregate
                #checks
                ::esrs_core::__private::inventory::submit! {
                    ::esrs_core::__private::AggregateInfo::of::<#self_ty>()
                }
            };
        }
    }

    fn event_enum(&self) -> TokenStream {
        let (vis, ident) = (&self.vis, &self.enum_ident);
        let doc = format!(
            "The events of the aggregate `{}` (stream category `{}`), generated by `#[aggregate]`.",
            self.self_text, self.name
        );
        let derives = match &self.args.derive {
            Some(paths) => quote!(#(#paths),*),
            None => quote!(
                ::core::fmt::Debug,
                ::core::clone::Clone,
                ::core::cmp::PartialEq
            ),
        };
        let variants = self.handlers.iter().map(|h| {
            let (variant, event) = (&h.variant, &h.event);
            let doc = format!("The event `{}`.", attr::path_text(&event.path));
            quote! {
                #[doc = #doc]
                #variant(#event)
            }
        });
        quote! {
            #[doc = #doc]
            #[derive(#derives)]
            #vis enum #ident {
                #(#variants,)*
            }
        }
    }

    fn event_set(&self) -> TokenStream {
        let ident = &self.enum_ident;
        let private = quote!(::esrs_core::__private);
        let events: Vec<&TypePath> = self.handlers.iter().map(|h| &h.event).collect();
        let variants: Vec<&Ident> = self.handlers.iter().map(|h| &h.variant).collect();
        let encode = self.handlers.iter().map(|h| {
            let (variant, event) = (&h.variant, &h.event);
            let call = quote_spanned! {event.span()=>
                #private::encode_event::<#event>(event)
            };
            quote!(Self::#variant(event) => #call)
        });
        quote! {
            #[automatically_derived]
            impl ::esrs_core::EventSet for #ident {
                const NAMES: &'static [&'static str] = &[
                    #(<#events as ::esrs_core::Event>::NAME,)*
                ];

                fn name(&self) -> &'static str {
                    match self {
                        #(Self::#variants(_) => <#events as ::esrs_core::Event>::NAME,)*
                    }
                }

                fn version(&self) -> u32 {
                    match self {
                        #(Self::#variants(_) => <#events as ::esrs_core::Event>::VERSION,)*
                    }
                }

                fn encode(
                    &self,
                ) -> ::core::result::Result<::esrs_core::Payload, ::esrs_core::EncodeError> {
                    match self {
                        #(#encode,)*
                    }
                }

                fn decode(
                    name: &str,
                    version: u32,
                    payload: &#private::RawValue,
                ) -> ::core::result::Result<Self, ::esrs_core::DecodeError> {
                    #(
                        if name == <#events as ::esrs_core::Event>::NAME {
                            return <#events as ::esrs_core::Event>::decode(version, payload)
                                .map(Self::#variants);
                        }
                    )*
                    ::core::result::Result::Err(::esrs_core::DecodeError::UnknownName {
                        name: ::std::borrow::ToOwned::to_owned(name),
                        known: <Self as ::esrs_core::EventSet>::NAMES.to_vec(),
                    })
                }
            }
        }
    }

    fn conversions(&self) -> TokenStream {
        let ident = &self.enum_ident;
        self.handlers
            .iter()
            .map(|h| {
                let (variant, event) = (&h.variant, &h.event);
                quote! {
                    #[automatically_derived]
                    impl ::core::convert::From<#event> for #ident {
                        fn from(event: #event) -> Self {
                            Self::#variant(event)
                        }
                    }

                    #[automatically_derived]
                    impl ::esrs_core::IntoEvents<#ident> for #event {
                        fn into_events(self) -> ::std::vec::Vec<#ident> {
                            ::std::vec![#ident::#variant(self)]
                        }
                    }

                    #[automatically_derived]
                    impl ::esrs_core::IntoEvents<#ident> for ::std::vec::Vec<#event> {
                        fn into_events(self) -> ::std::vec::Vec<#ident> {
                            ::core::iter::Iterator::collect(
                                ::core::iter::Iterator::map(
                                    ::core::iter::IntoIterator::into_iter(self),
                                    #ident::#variant,
                                ),
                            )
                        }
                    }

                    #[automatically_derived]
                    impl ::esrs_core::IntoEvents<#ident> for ::core::option::Option<#event> {
                        fn into_events(self) -> ::std::vec::Vec<#ident> {
                            ::core::iter::Iterator::collect(
                                ::core::iter::Iterator::map(
                                    ::core::iter::IntoIterator::into_iter(self),
                                    #ident::#variant,
                                ),
                            )
                        }
                    }
                }
            })
            .collect()
    }

    fn fingerprint(&self) -> u64 {
        let mut codes: Vec<&str> = self.handlers.iter().map(|h| h.code.as_str()).collect();
        codes.sort_unstable();
        fingerprint::fnv1a(codes.join("\n").as_bytes())
    }

    fn aggregate(&self) -> TokenStream {
        let (self_ty, ident, name) = (self.self_ty, &self.enum_ident, self.name);
        let private = quote!(::esrs_core::__private);
        let arms = self.handlers.iter().map(|h| {
            let (variant, method) = (&h.variant, &h.method);
            quote!(#ident::#variant(event) => Self::#method(self, event))
        });
        let snapshots = self.args.snapshot_every.map(|(every, span)| {
            let version = self.args.snapshot_version.map_or(1, |(v, _)| v);
            let fingerprint = self.fingerprint();
            let encode = quote_spanned!(span=> #private::encode_snapshot_state::<Self>(self));
            let decode = quote_spanned!(span=> #private::decode_snapshot_state::<Self>(payload));
            quote! {
                const SNAPSHOT_EVERY: ::core::option::Option<u64> =
                    ::core::option::Option::Some(#every);
                const SNAPSHOT_KEY: ::esrs_core::SnapshotKey =
                    #private::snapshot_key(#version, #fingerprint);

                fn encode_snapshot(
                    &self,
                ) -> ::core::option::Option<
                    ::core::result::Result<::esrs_core::Payload, ::esrs_core::EncodeError>,
                > {
                    #encode
                }

                fn decode_snapshot(
                    payload: &#private::RawValue,
                ) -> ::core::option::Option<::core::result::Result<Self, #private::serde_json::Error>>
                {
                    #decode
                }
            }
        });
        let impl_line = quote_spanned!(self_ty.span()=> impl ::esrs_core::Aggregate for #self_ty);
        quote! {
            #[automatically_derived]
            #impl_line {
                const NAME: &'static str = #name;
                #snapshots
                type Event = #ident;

                fn apply(&mut self, event: &#ident) {
                    match event {
                        #(#arms,)*
                    }
                }
            }
        }
    }

    fn checks(&self) -> TokenStream {
        let private = quote!(::esrs_core::__private);
        let mut checks = TokenStream::new();
        for (j, later) in self.handlers.iter().enumerate() {
            let event = &later.event;
            checks.extend(quote_spanned! {event.span()=>
                const _: () = #private::assert_event::<#event>();
            });
            for earlier in &self.handlers[..j] {
                let first = &earlier.event;
                let message = format!(
                    "`{}` and `{}` are stored under the same event name, so aggregate `{}` could not tell their stored events apart: give one of them its own #[event(name = \"…\")]",
                    attr::path_text(&first.path),
                    attr::path_text(&event.path),
                    self.self_text,
                );
                checks.extend(quote_spanned! {event.span()=>
                    const _: () = if #private::str_eq(
                        <#first as ::esrs_core::Event>::NAME,
                        <#event as ::esrs_core::Event>::NAME,
                    ) {
                        ::core::panic!(#message)
                    };
                });
            }
        }
        let ident = &self.enum_ident;
        let probes = self.commands.iter().map(|c| {
            let ok = &c.ok;
            quote_spanned! {ok.span()=>
                (&#private::CommandProbe::<#ok, #ident>::NEW).check_command();
            }
        });
        quote! {
            #checks
            #[allow(dead_code)]
            fn commands_return_events_of_the_aggregate() {
                #[allow(unused_imports)]
                use #private::{EventCommand as _, OtherCommand as _};
                #(#probes)*
            }
        }
    }
}
