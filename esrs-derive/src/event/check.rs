//! Checks of versions and upcasters that need the whole attribute.

use crate::ctxt::Ctxt;

use super::EventInput;

/// Checks the upcasters against the version and each other: each reads an older version
/// and leads, directly or through others, to one the type decodes.
pub(super) fn check(cx: &mut Ctxt, input: &EventInput<'_>) {
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
