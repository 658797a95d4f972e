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

/// Then, when nothing else is wrong with the versions (an error there would be repeated),
/// every stored version has a reader.
pub(super) fn check_versions_read(cx: &mut Ctxt, input: &EventInput<'_>) {
    if cx.is_ok() {
        check_older_versions(cx, input);
    }
}

/// Every stored version from `oldest_version` (1 by default) up is read: by a payload
/// upcaster, or by the `upcast_from` type (whose own versions the compiler checks).
fn check_older_versions(cx: &mut Ctxt, input: &EventInput<'_>) {
    let version = input.version;
    if let Some((oldest, span)) = input.oldest_version {
        if oldest > version {
            cx.error_at(
                span,
                format!("`oldest_version = {oldest}` is above the event's `version = {version}`: the oldest version stored is at most the current one"),
            );
            return;
        }
        if input.upcast_from.is_some() {
            cx.error_at(
                span,
                "`oldest_version` says that no older version is stored, and `upcast_from` reads older versions: keep one of them",
            );
            return;
        }
        if let Some(upcast) = input.upcasts.iter().find(|u| u.from < oldest) {
            cx.error_at(
                upcast.span,
                format!("this upcaster reads version {}, below `oldest_version = {oldest}`, which says no such event is stored: remove the upcaster or lower `oldest_version`", upcast.from),
            );
            return;
        }
    }
    let decoded = input.decoded_here();
    for (skipped, span) in &input.skipped_versions {
        if *skipped == 0 || *skipped >= version {
            cx.error_at(
                *span,
                format!("a skipped version is an older version than the event's `version = {version}`: list versions from 1 to {}", version.saturating_sub(1)),
            );
            return;
        }
        if decoded.contains(skipped) {
            cx.error_at(
                *span,
                format!("version {skipped} is read by an upcaster, so events were stored under it: remove it from `skipped_versions`"),
            );
            return;
        }
    }
    if input.upcast_from.is_some() {
        return;
    }
    let Some(span) = input.version_span else {
        return;
    };
    let oldest = input.oldest_version.map_or(1, |(v, _)| v);
    let unread: Vec<u32> = (oldest..version)
        .filter(|v| !decoded.contains(v) && !input.skipped_versions.iter().any(|(s, _)| s == v))
        .collect();
    let Some(&last) = unread.last() else {
        return;
    };
    let list = match unread.as_slice() {
        [one] => format!("version {one}"),
        [rest @ .., last] => format!(
            "versions {} and {last}",
            rest.iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        [] => return,
    };
    cx.error_at(
        span,
        format!(
            "stored `{ident}` events of {list} would not load: nothing reads them. Keep version {last} as a type of its own and add `upcast_from = {ident}V{last}`, or add `upcast(from = {last}, with = path::to::function)`{each}; if no `{ident}` older than version {version} was ever stored, write `oldest_version = {version}`, or list the versions never stored in `skipped_versions = [{last}]`",
            ident = input.ident,
            each = if unread.len() > 1 { " for each of them" } else { "" },
        ),
    );
}
