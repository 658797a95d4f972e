//! Checks that need every handler at once.

use std::collections::HashMap;

use proc_macro2::Span;
use quote::ToTokens;

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
    if let (Some((_, span)), None) = (&args.snapshot_version, &args.snapshot_every) {
        cx.error_at(
            *span,
            "`snapshot_version` has no effect without `snapshot_every = N`: add it, or remove `snapshot_version`",
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
                    "the event types `{}` and `{}` would both be the variant `{variant}` of the event enum: import one under another name (`use … as Other{variant};`) or rename it",
                    attr::path_text(&first.event.path),
                    attr::path_text(&handler.event.path),
                ),
            );
            continue;
        }
        variants.insert(variant, handler);
    }
}
