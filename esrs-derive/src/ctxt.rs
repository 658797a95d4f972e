//! Error accumulation: every problem of the input is reported at once, each at its span.

use std::fmt::Display;

use quote::ToTokens;

/// Collects the errors found while parsing and checking one macro input.
#[derive(Default)]
pub(crate) struct Ctxt {
    errors: Vec<syn::Error>,
}

impl Ctxt {
    /// Records an error at the span of `tokens`.
    pub(crate) fn error_spanned_by<T: ToTokens, M: Display>(&mut self, tokens: T, message: M) {
        self.errors.push(syn::Error::new_spanned(tokens, message));
    }

    /// Records an error at `span`.
    pub(crate) fn error_at<M: Display>(&mut self, span: proc_macro2::Span, message: M) {
        self.errors.push(syn::Error::new(span, message));
    }

    /// Records a parse error.
    pub(crate) fn syn_error(&mut self, error: syn::Error) {
        self.errors.push(error);
    }

    /// How many errors have been recorded.
    pub(crate) fn len(&self) -> usize {
        self.errors.len()
    }

    /// Whether no error has been recorded.
    pub(crate) fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }

    /// The recorded errors as `compile_error!` invocations.
    pub(crate) fn into_compile_errors(self) -> proc_macro2::TokenStream {
        self.errors
            .iter()
            .map(syn::Error::to_compile_error)
            .collect()
    }
}
