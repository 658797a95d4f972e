//! `#[derive(Event)]`: parse the struct and its `#[event(...)]` attributes (`parse`), check
//! the versions and upcasters together (`check`), then expand the `Event` impl, its
//! upcasters, its schema and its catalog entry (`expand`).

mod check;
mod expand;
mod parse;

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::{Attribute, DeriveInput, Ident, Member, Path, Type};

use crate::ctxt::Ctxt;

const KEYS: &[&str] = &[
    "name",
    "aliases",
    "version",
    "upcast_from",
    "upcast",
    "oldest_version",
    "skipped_versions",
    "schema",
];
const UPCAST_KEYS: &[&str] = &["from", "to", "with"];
const FIELD_KEYS: &[&str] = &["schema_any", "personal", "subject"];

/// A payload-level upcaster: `upcast(from = 1, to = 2, with = path)`.
struct PayloadUpcast {
    from: u32,
    to: u32,
    with: Path,
    span: Span,
}

/// The parsed input of `#[derive(Event)]`.
struct EventInput<'a> {
    ident: &'a Ident,
    name: String,
    /// Whether `name` was written, rather than taken from the type's name.
    explicit_name: bool,
    /// Former stored names whose rows decode as this event.
    aliases: Vec<String>,
    version: u32,
    /// Where `version = N` is written, if it is.
    version_span: Option<Span>,
    /// `oldest_version = N`: no event of a version below `N` is stored, so none is read.
    oldest_version: Option<(u32, Span)>,
    /// `skipped_versions = [N, …]`: versions under which no event was ever stored.
    skipped_versions: Vec<(u32, Span)>,
    upcast_from: Option<Path>,
    upcasts: Vec<PayloadUpcast>,
    /// What the payload's JSON Schema is derived from; `None` with `schema = false`.
    schema: Option<Mirror<'a>>,
    /// The fields marked `#[event(personal)]`, and the `#[event(subject)]` field.
    personal: PersonalFields<'a>,
}

impl EventInput<'_> {
    /// The versions the type decodes whatever its `upcast_from` type decodes: its own and
    /// those its payload upcasters lead to it from (the rule of `known_versions`, at
    /// compile time).
    fn decoded_here(&self) -> Vec<u32> {
        let mut decoded = vec![self.version];
        let mut steps: Vec<(u32, u32)> = self.upcasts.iter().map(|u| (u.from, u.to)).collect();
        steps.sort_unstable_by(|a, b| b.cmp(a));
        for (from, to) in steps {
            if decoded.contains(&to) && !decoded.contains(&from) {
                decoded.push(from);
            }
        }
        decoded
    }
}

/// The personal-data fields of an event and the field that names their subject.
#[derive(Default)]
struct PersonalFields<'a> {
    /// Each field marked `#[event(personal)]`: member, its name (as the key of the
    /// ciphertext's associated data) and type.
    fields: Vec<(Member, String, &'a Type)>,
    /// The field marked `#[event(subject)]`.
    subject: Option<(Member, &'a Type)>,
}

/// A copy of the struct's shape for schemars: its fields with their types and serde
/// attributes, and the struct's serde attributes. Its `JsonSchema` derive is the event's
/// schema, so the user writes no derive of their own.
struct Mirror<'a> {
    /// The struct's `#[serde(...)]` attributes.
    attrs: Vec<&'a Attribute>,
    /// Whether the struct has a bare `#[serde(default)]`, which schemars reads from the
    /// struct's `Default` (the mirror then gets one, built from the event's).
    default: bool,
    fields: Vec<MirrorField<'a>>,
    style: Style,
}

/// One field of the mirror.
struct MirrorField<'a> {
    member: Member,
    /// The field's type; `None` for `#[event(schema_any)]`, whose schema accepts any value.
    ty: Option<&'a Type>,
    /// The field's serde attributes, as the mirror carries them.
    attrs: Vec<TokenStream>,
}

/// How the struct's fields are written.
#[derive(Clone, Copy, PartialEq)]
enum Style {
    Named,
    Tuple,
    Unit,
}

/// Expands `#[derive(Event)]`.
pub(crate) fn derive(input: &DeriveInput) -> TokenStream {
    let mut cx = Ctxt::default();
    let parsed = parse::parse(&mut cx, input);
    if let Some(parsed) = &parsed {
        check::check(&mut cx, parsed);
        check::check_versions_read(&mut cx, parsed);
    }
    match parsed {
        Some(parsed) if cx.is_ok() => expand::expand(&parsed),
        parsed => {
            let errors = cx.into_compile_errors();
            let stub = expand::stub(input, parsed.as_ref().map(|p| (p.name.as_str(), p.version)));
            quote! { #errors #stub }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn derive_str(item: &str) -> String {
        derive(&syn::parse_str(item).unwrap()).to_string()
    }

    #[test]
    fn bad_attributes_give_errors_and_a_stand_in_impl() {
        let inputs = [
            "#[event] struct E;",
            "#[event = 1] struct E;",
            "#[event(version)] struct E;",
            "#[event(version = -1)] struct E;",
            "#[event(version = 4294967296)] struct E;",
            "#[event(name = 1)] struct E;",
            "#[event(upcast_from = 1)] struct E;",
            "#[event(upcast)] struct E;",
            "#[event(upcast(from = 0, with = f))] struct E;",
            "#[event(upcast(with = f))] struct E;",
            "#[event(upcast(from = 1, to = 1, with = f), version = 2)] struct E;",
            "#[event(upcast(from = 1, with = f, colour = 2), version = 2)] struct E;",
            "#[event(version = 2, upcast(from = 1, to = 3, with = f))] struct E;",
            "#[event(aliases = \"Old\")] struct E;",
            "#[event(aliases = [\"E\"])] struct E;",
            "#[event(aliases = [\"Old\", \"Old\"])] struct E;",
            "#[event(aliases = [\"an old\"])] struct E;",
            "#[event(schema = 0)] struct E;",
            "struct E { #[event(schema_any = true)] a: u8 }",
            "struct E { #[event(colour)] a: u8 }",
            "#[event(schema = false)] struct E { #[event(schema_any)] a: u8 }",
            "struct E { #[serde(deserialize_with = \"f\")] a: u8 }",
            "#[event(version = 2)] struct E;",
            "#[event(version = 3, upcast(from = 2, with = f))] struct E;",
            "#[event(version = 2, oldest_version = 3)] struct E;",
            "#[event(version = 2, skipped_versions = [2])] struct E;",
            "#[event(version = 3, upcast(from = 1, to = 3, with = f), skipped_versions = [1])] struct E;",
        ];
        for item in inputs {
            let out = derive_str(item);
            assert!(out.contains("compile_error"), "{item}: {out}");
            assert!(
                out.contains("impl :: esrs_core :: Event for E"),
                "{item}: {out}"
            );
        }
        let out = derive_str("union U { a: u8 }");
        assert!(
            out.contains("compile_error") && !out.contains("impl"),
            "{out}"
        );
    }

    #[test]
    fn the_schema_is_a_function_of_the_catalog_entry_only() {
        let out = derive_str(
            "#[serde(rename_all = \"camelCase\")] struct E { #[serde(default)] a_b: u8 }",
        );
        assert!(out.contains("fn __esrs_event_schema"), "{out}");
        assert!(out.contains("with_schema (__esrs_event_schema)"), "{out}");
        // The mirror carries the serde attributes; decode does not call the schema.
        assert!(
            out.contains("# [serde (rename_all = \"camelCase\")]"),
            "{out}"
        );
        assert!(out.contains("# [serde (default)] a_b : u8"), "{out}");
        // Its schema is read through the requirement of one, checked at the field.
        assert!(
            out.contains(
                "# [schemars (with = \":: esrs_core :: requirements :: FieldSchema < u8 >\")]"
            ),
            "{out}"
        );
        let decode = &out[out.find("fn decode").unwrap()..out.find("const _").unwrap()];
        assert!(!decode.contains("schema"), "{decode}");

        let out = derive_str("#[event(schema = false)] struct E { a: u8 }");
        assert!(
            !out.contains("__esrs_event_schema") && !out.contains("JsonSchema"),
            "{out}"
        );

        let out = derive_str(
            "struct E { #[event(schema_any)] #[serde(with = \"m\", rename = \"x\")] a: u8 }",
        );
        assert!(
            out.contains(
                "# [serde (rename = \"x\")] a : :: esrs_core :: __private :: serde_json :: Value"
            ),
            "{out}"
        );
    }

    #[test]
    fn names_and_aliases_are_recorded() {
        let out = derive_str("#[event(aliases = [\"Old\", \"Older\"])] struct E;");
        assert!(out.contains("const ALIASES : & 'static [& 'static :: core :: primitive :: str] = & [\"Old\" , \"Older\"]"), "{out}");
        assert!(
            out.contains("const EXPLICIT_NAME : :: core :: primitive :: bool = false"),
            "{out}"
        );
        let out = derive_str("#[event(name = \"E\")] struct E;");
        assert!(
            !out.contains("EXPLICIT_NAME") && !out.contains("ALIASES"),
            "{out}"
        );
    }

    #[test]
    fn every_older_version_has_a_reader_or_is_declared_gone() {
        for item in [
            "#[event(version = 2, oldest_version = 2)] struct E;",
            "#[event(version = 3, upcast(from = 2, with = f), oldest_version = 2)] struct E;",
            "#[event(version = 3, upcast(from = 1, to = 3, with = f), skipped_versions = [2])] struct E;",
            "#[event(version = 3, upcast(from = 1, with = f), upcast(from = 2, with = g))] struct E;",
            "#[event(version = 3, upcast_from = Old)] struct E;",
        ] {
            let out = derive_str(item);
            assert!(!out.contains("compile_error"), "{item}: {out}");
        }
        // With `upcast_from`, the versions between the old type's and this one are checked
        // by the compiler, with the versions the payload upcasters and the skipped list cover.
        let out = derive_str(
            "#[event(version = 4, upcast_from = Old, upcast(from = 3, with = f), skipped_versions = [2])] struct E;",
        );
        assert!(out.contains("no_version_gap"), "{out}");
        assert!(out.contains("& [2u32 , 3u32 , 4u32]"), "{out}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let out = derive_str("#[event(name = \"\", version = 0, colour = 1)] struct E;");
        assert_eq!(out.matches("compile_error").count(), 3, "{out}");
    }
}
