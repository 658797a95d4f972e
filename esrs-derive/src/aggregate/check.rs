//! Checks that need every handler at once.

use std::collections::HashMap;

use proc_macro2::Span;
use quote::ToTokens;
use syn::Ident;

use crate::attr;
use crate::ctxt::Ctxt;
use crate::fingerprint;

use super::{Args, Handler};

/// Checks what no single handler shows: the `name` key, snapshot settings, and handlers
/// that repeat an event type or its variant name.
pub(super) fn check(cx: &mut Ctxt, args: &Args, handlers: &[Handler]) {
    if !args.name_given {
        cx.error_at(
            Span::call_site(),
            "missing `name`, the aggregate's stream category: write e.g. #[aggregate(name = \"cart\")]",
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
                    "the event types `{}` and `{}` would both be the variant `{variant}` of the event enum: if they are one type, keep one handler; if not, import one under another name (`use … as Other{variant};`) or rename it",
                    attr::path_text(&first.event.path),
                    attr::path_text(&handler.event.path),
                ),
            );
            continue;
        }
        variants.insert(variant, handler);
    }
}

/// Refuses two handlers of one event type where one names it through a `type` alias of the
/// block's module (`aliases`: by name, the canonical text of the type it names), which the
/// macro sees in the block's source file: the generated impls of the two would collide.
pub(super) fn check_aliases(
    cx: &mut Ctxt,
    handlers: &[Handler],
    aliases: &HashMap<String, String>,
) {
    if aliases.is_empty() {
        return;
    }
    let resolve = |text: &str| {
        let mut text = text.to_owned();
        // Bounded: aliases that name each other do not compile anyway.
        for _ in 0..aliases.len() {
            match aliases.get(&text) {
                Some(named) => text = named.clone(),
                None => break,
            }
        }
        text
    };
    let mut seen: HashMap<String, (&Handler, String)> = HashMap::new();
    for handler in handlers {
        let text = fingerprint::canonical_text(handler.event.to_token_stream());
        let resolved = resolve(&text);
        if let Some((first, first_text)) = seen.get(&resolved) {
            // The same spelling twice is the duplicate that `check` reports.
            if *first_text != text {
                let shown = |h: &Handler| attr::path_text(&h.event.path);
                let message = if text != resolved {
                    let target = if *first_text == resolved {
                        shown(first)
                    } else {
                        resolved.trim().to_owned()
                    };
                    format!(
                        "`{}` is a `type` alias of `{target}`, whose #[apply] handler is `{}`: an event type has one handler; merge them",
                        shown(handler),
                        first.method
                    )
                } else {
                    format!(
                        "a second #[apply] handler for `{}`, whose first handler `{}` names it through the `type` alias `{}`: an event type has one handler; merge them",
                        shown(handler),
                        first.method,
                        shown(first)
                    )
                };
                cx.error_spanned_by(&handler.event, message);
            }
            continue;
        }
        seen.insert(resolved, (handler, text));
    }
}

/// Refuses the names that would make the generated items collide with the user's: an event
/// enum named like the state type, and handlers taking the event enum or the state itself
/// (those handlers are left out, so that the generated enum is not recursive).
pub(super) fn check_names(
    cx: &mut Ctxt,
    args: &Args,
    self_ident: &Ident,
    enum_ident: &Ident,
    handlers: &mut Vec<Handler>,
) {
    if enum_ident == self_ident {
        let at = args
            .event_enum
            .as_ref()
            .map_or_else(|| enum_ident.span(), |(_, ident)| ident.span());
        cx.error_at(
            at,
            format!("the event enum cannot be named `{self_ident}`, the name of the state type: name it e.g. `event_enum = {self_ident}Event`"),
        );
    }
    handlers.retain(|handler| {
        let path = &handler.event.path;
        let single = path.segments.len() == 1 && path.leading_colon.is_none();
        if handler.variant == *enum_ident {
            cx.error_spanned_by(
                &handler.event,
                format!("`{enum_ident}` is the aggregate's event enum, which #[aggregate] generates from the handlers: an #[apply] handler takes one event type, e.g. `fn added(&mut self, event: &ItemAdded)`"),
            );
            false
        } else if single && (handler.variant == *self_ident || handler.variant == "Self") {
            cx.error_spanned_by(
                &handler.event,
                format!("an #[apply] handler takes an event, not the state `{self_ident}` itself: `fn added(&mut self, event: &ItemAdded)`"),
            );
            false
        } else {
            true
        }
    });
}
