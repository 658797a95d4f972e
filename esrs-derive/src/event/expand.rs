//! Expansion of a checked event, and the stand-in emitted beside errors.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput};

use crate::attr;
use crate::hygiene::{local, local_at, receiver};

use super::{EventInput, Mirror, PayloadUpcast, Style};

/// The `Event` impl, the compile-time checks of `upcast_from`, the schema and the catalog
/// entry.
pub(super) fn expand(input: &EventInput<'_>) -> TokenStream {
    let ident = input.ident;
    let name = &input.name;
    let version = input.version;
    let private = quote!(::esrs_core::__private);
    // The parameters of `decode`, and the bindings of the generated bodies.
    let (version_arg, payload_arg) = (local("version"), local("payload"));
    let known_list = local("known");

    let known_versions = if input.upcast_from.is_none() && input.upcasts.is_empty() {
        quote!()
    } else {
        let previous = input.upcast_from.as_ref().map(|prev| {
            let known = local_at("known", prev.span());
            quote_spanned! {prev.span()=>
                ::core::iter::Extend::extend(&mut #known, <#prev as ::esrs_core::Event>::known_versions());
            }
        });
        let mut steps: Vec<(u32, u32)> = input.upcasts.iter().map(|u| (u.from, u.to)).collect();
        steps.sort_unstable_by(|a, b| b.cmp(a));
        let step = steps.iter().map(|(from, to)| {
            quote! {
                if #known_list.contains(&#to) && !#known_list.contains(&#from) {
                    #known_list.push(#from);
                }
            }
        });
        quote! {
            fn known_versions() -> ::std::vec::Vec<u32> {
                let mut #known_list = ::std::vec![#version];
                #previous
                #(#step)*
                #known_list.sort_unstable();
                #known_list.dedup();
                #known_list
            }
        }
    };

    let decoded_here = input.decoded_here();
    let payload_steps = input.upcasts.iter().map(|upcast| {
        let PayloadUpcast { from, to, with, .. } = upcast;
        let payload = local_at("payload", with.span());
        let call = quote_spanned! {with.span()=>
            ::esrs_core::requirements::PayloadUpcaster::__upcast(&#with, #name, #from, #payload)
        };
        // An upcaster whose target is decoded only through `upcast_from` is checked
        // against the full list (a rare shape); the others need no check at run time.
        let known = if decoded_here.contains(from) {
            quote!()
        } else {
            quote!(&&<Self as ::esrs_core::Event>::known_versions().contains(&#version_arg))
        };
        let upcast = local("upcast");
        quote! {
            if #version_arg == #from #known {
                let #upcast = #call?;
                return <Self as ::esrs_core::Event>::decode(#to, #private::RawValue::get(&#upcast));
            }
        }
    });
    let previous_step = input.upcast_from.as_ref().map(|prev| {
        let (version_at, payload_at) = (
            local_at("version", prev.span()),
            local_at("payload", prev.span()),
        );
        let call = quote_spanned! {prev.span()=>
            ::core::result::Result::map(
                <#prev as ::esrs_core::Event>::decode(#version_at, #payload_at),
                <#prev as ::esrs_core::requirements::UpcastInto<Self>>::__upcast_into,
            )
        };
        // A version the previous type does not know is one this type does not know: the
        // error lists this type's versions.
        let (error, unknown, other) = (local("error"), local("unknown"), local("other"));
        quote! {
            if #version_arg < #version {
                return ::core::result::Result::map_err(#call, |#error| match #error {
                    ::esrs_core::DecodeError::UnknownVersion { version: #unknown, .. }
                        if #unknown == #version_arg =>
                    {
                        ::esrs_core::DecodeError::UnknownVersion {
                            name: #name,
                            version: #version_arg,
                            known: <Self as ::esrs_core::Event>::known_versions(),
                        }
                    }
                    #other => #other,
                });
            }
        }
    });
    let decode_older = quote! {
        #(#payload_steps)*
        #previous_step
    };
    let personal_fields = if input.personal.fields.is_empty() {
        quote!(::core::option::Option::None)
    } else {
        quote!(::core::option::Option::Some(
            <Self as ::esrs_core::Event>::personal_fields
        ))
    };
    let parse = {
        let (version_at, payload_at) = (
            local_at("version", ident.span()),
            local_at("payload", ident.span()),
        );
        quote_spanned! {ident.span()=>
            <Self as ::esrs_core::requirements::DecodableEvent>::__decode(#name, #version_at, #payload_at, #personal_fields)
        }
    };

    // Checks of constants: `Satisfied<true>` implements each trait, so a failed check is a
    // missing impl reported with the trait's message at the `upcast_from` type.
    let previous_checks = input.upcast_from.as_ref().map(|prev| {
        let requirements = quote!(::esrs_core::requirements);
        // Versions never stored need no reader.
        let mut read: Vec<u32> = decoded_here.clone();
        read.extend(input.skipped_versions.iter().map(|(v, _)| *v));
        read.sort_unstable();
        quote_spanned! {prev.span()=>
            const _: <<#requirements::Satisfied<{
                <#prev as ::esrs_core::Event>::VERSION < #version
            }> as #requirements::Answer>::Is as #requirements::LowerVersion<#prev, #ident>>::Holds = ();
            const _: <<#requirements::Satisfied<{
                #private::str_eq(<#prev as ::esrs_core::Event>::NAME, #name)
            }> as #requirements::Answer>::Is as #requirements::SameStoredName<#prev, #ident>>::Holds = ();
            const _: <<#requirements::Satisfied<{
                #private::no_version_gap(<#prev as ::esrs_core::Event>::VERSION, #version, &[#(#read),*])
            }> as #requirements::Answer>::Is as #requirements::NoVersionGap<#prev, #ident>>::Holds = ();
        }
    });
    let mut info = quote!(#private::EventInfo::of::<#ident>());
    if let Some(prev) = &input.upcast_from {
        info = quote!(#info.with_upcast_from::<#prev>());
    }
    if !input.upcasts.is_empty() {
        let steps = input.upcasts.iter().map(|u| {
            let (from, to, with) = (u.from, u.to, attr::path_text(&u.with));
            quote!((#from, #to, #with))
        });
        info = quote!(#info.with_payload_upcasters(&[#(#steps),*]));
    }
    let schema = input.schema.as_ref().map(|mirror| schema_fn(ident, mirror));
    if schema.is_some() {
        info = quote!(#info.with_schema(__esrs_event_schema));
    }
    let aliases = (!input.aliases.is_empty()).then(|| {
        let aliases = &input.aliases;
        quote!(const ALIASES: &'static [&'static ::core::primitive::str] = &[#(#aliases),*];)
    });
    let personal = personal_items(input);
    let implicit = (!input.explicit_name).then(|| {
        quote!(
            const EXPLICIT_NAME: ::core::primitive::bool = false;
        )
    });

    quote! {
        #[automatically_derived]
        impl ::esrs_core::Event for #ident {
            const NAME: &'static str = #name;
            const VERSION: u32 = #version;
            #aliases
            #implicit
            #personal

            #known_versions

            fn decode(
                #version_arg: u32,
                #payload_arg: &::core::primitive::str,
            ) -> ::core::result::Result<Self, ::esrs_core::DecodeError> {
                if #version_arg == #version {
                    return #parse;
                }
                #decode_older
                ::core::result::Result::Err(::esrs_core::DecodeError::UnknownVersion {
                    name: #name,
                    version: #version_arg,
                    known: <Self as ::esrs_core::Event>::known_versions(),
                })
            }
        }

        const _: () = {
            #previous_checks
            #schema
            #private::inventory::submit! { #info }
        };
    }
}

/// `PERSONAL` and `personal_fields` for an event with fields marked `#[event(personal)]`:
/// each field checked to be a `Personal<_>` at its type, the subject to be `Display` at its.
fn personal_items(input: &EventInput<'_>) -> TokenStream {
    let (Some((subject, subject_ty)), false) =
        (&input.personal.subject, input.personal.fields.is_empty())
    else {
        return quote!();
    };
    let subject_call = {
        let this = receiver(subject_ty.span());
        quote_spanned! {subject_ty.span()=>
            <#subject_ty as ::esrs_core::requirements::SubjectId>::__subject_id(&#this.#subject)
        }
    };
    let fields = input.personal.fields.iter().map(|(member, name, ty)| {
        let (this, subject) = (receiver(ty.span()), local_at("subject", ty.span()));
        quote_spanned! {ty.span()=>
            <#ty as ::esrs_core::requirements::PersonalValue>::__personal_field(
                &#this.#member,
                #name,
                ::core::clone::Clone::clone(&#subject),
            )
        }
    });
    let subject = local("subject");
    quote! {
        const PERSONAL: ::core::primitive::bool = true;

        fn personal_fields(&self) -> ::std::vec::Vec<::esrs_core::personal::PersonalField> {
            let #subject: ::std::string::String = #subject_call;
            ::std::vec![#(#fields),*]
        }
    }
}

/// `fn __esrs_event_schema() -> serde_json::Value`: the payload's JSON Schema, derived by
/// schemars from a mirror of the struct (same fields, types and serde attributes) declared
/// inside the function, where it takes the event's name. Called only when the catalog is
/// written or checked, never on the encode or decode path.
fn schema_fn(ident: &syn::Ident, mirror: &Mirror<'_>) -> TokenStream {
    let private = quote!(::esrs_core::__private);
    let attrs = &mirror.attrs;
    // Schemars reads each field's schema from its type named through the requirement of
    // a schema, so that a type without one is reported once, at the field, with what to
    // do, rather than by schemars' own bound.
    let fields = mirror.fields.iter().map(|field| {
        let field_attrs = &field.attrs;
        let (ty, with) = match field.ty {
            Some(ty) => (quote!(#ty), schema_with(ty).unwrap_or_default()),
            None => (quote!(#private::serde_json::Value), quote!()),
        };
        match &field.member {
            syn::Member::Named(name) => quote!(#with #(#field_attrs)* #name: #ty),
            syn::Member::Unnamed(_) => quote!(#with #(#field_attrs)* #ty),
        }
    });
    // A type schemars cannot read back from its text (a `$crate` path of a `macro_rules!`)
    // keeps its own schema, checked at the field.
    let assertions = mirror.fields.iter().filter_map(|field| {
        let ty = field.ty.filter(|ty| schema_with(ty).is_none())?;
        Some(quote_spanned! {ty.span()=>
            <#ty as ::esrs_core::requirements::EventFieldSchema>::__has_schema();
        })
    });
    let body = match mirror.style {
        Style::Named => quote!({ #(#fields,)* }),
        Style::Tuple => quote!((#(#fields,)*);),
        Style::Unit => quote!(;),
    };
    // Schemars reads a bare `#[serde(default)]` from the struct's `Default`: the mirror's
    // is the event's, field by field.
    let default = mirror.default.then(|| {
        let members: Vec<&syn::Member> = mirror.fields.iter().map(|f| &f.member).collect();
        let bindings: Vec<syn::Ident> = (0..members.len())
            .map(|i| local(&format!("__field{i}")))
            .collect();
        let patterns = mirror.fields.iter().zip(&bindings).map(|(field, binding)| {
            if field.ty.is_some() {
                quote!(#binding)
            } else {
                quote!(_)
            }
        });
        let values = mirror.fields.iter().zip(&bindings).map(|(field, binding)| {
            if field.ty.is_some() {
                quote!(#binding)
            } else {
                quote!(#private::serde_json::Value::Null)
            }
        });
        quote! {
            impl ::core::default::Default for #ident {
                fn default() -> Self {
                    let __EsrsEvent { #(#members: #patterns),* } =
                        <__EsrsEvent as ::core::default::Default>::default();
                    #ident { #(#members: #values),* }
                }
            }
        }
    });
    let alias = mirror
        .default
        .then(|| quote!(#[allow(dead_code)] type __EsrsEvent = #ident;));
    quote! {
        #alias
        fn __esrs_event_schema() -> #private::serde_json::Value {
            // schemars' output calls `.into()`, even in a user's `#![no_implicit_prelude]`
            // module; and names `serde` for the defaults of `serialize_with` fields.
            #[allow(unused_imports)]
            use ::core::convert::Into as _;
            #[allow(unused_imports)]
            use #private::serde;
            #(#assertions)*
            #[derive(::esrs_core::catalog::schemars::JsonSchema)]
            #[schemars(crate = "::esrs_core::catalog::schemars")]
            #(#attrs)*
            #[allow(dead_code, non_camel_case_types)]
            struct #ident #body
            #default
            #private::event_schema::<#ident>()
        }
    }
}

/// `#[schemars(with = "::esrs_core::requirements::FieldSchema<Type>")]` for a field's type,
/// when its text reads back as a type; spanned at the type, which schemars gives to the
/// tokens it parses from the string.
fn schema_with(ty: &syn::Type) -> Option<TokenStream> {
    let text = quote!(::esrs_core::requirements::FieldSchema<#ty>).to_string();
    syn::parse_str::<syn::Type>(&text).ok()?;
    let mut schema = proc_macro2::Literal::string(&text);
    schema.set_span(ty.span());
    Some(quote!(#[schemars(with = #schema)]))
}

/// A stand-in impl emitted beside the errors, so that uses of the type elsewhere do not add
/// a cascade of "not an event" errors; it keeps the stored name and version when they were
/// read, so that the checks of other types against it do not fail too.
pub(super) fn stub(input: &DeriveInput, parsed: Option<(&str, u32)>) -> TokenStream {
    if !matches!(input.data, Data::Struct(_)) || !input.generics.params.is_empty() {
        return quote!();
    }
    let ident = &input.ident;
    let fallback = ident.to_string();
    let (name, version) = parsed.unwrap_or((&fallback, 1));
    let version_arg = local("version");
    quote! {
        #[automatically_derived]
        impl ::esrs_core::Event for #ident {
            const NAME: &'static str = #name;
            const VERSION: u32 = #version;
            fn decode(
                #version_arg: u32,
                _: &::core::primitive::str,
            ) -> ::core::result::Result<Self, ::esrs_core::DecodeError> {
                ::core::result::Result::Err(::esrs_core::DecodeError::UnknownVersion {
                    name: #name,
                    version: #version_arg,
                    known: ::std::vec::Vec::new(),
                })
            }
        }
    }
}
