//! The names generated code gives its own bindings.
//!
//! A token keeps the hygiene of the span it is created with, and `quote_spanned!` gives its
//! span to every token it writes. A binding written at a user's span (so that an error
//! points at the user's type) then resolves where that token came from: when the user's
//! type or name is passed through a `macro_rules!` fragment (`$name:ident`, `$ty:ty`), that
//! is outside the macro, and the binding no longer meets its own declaration, written at
//! the call site ("cannot find value `payload` in this scope").
//!
//! So every local binding, parameter and closure argument of generated code is one of these
//! identifiers: it resolves at [`Span::mixed_site`], where no code of the user's can name it
//! or be shadowed by it, whatever span it is shown at. `self`, whose declaration is the
//! receiver that generated methods write at the call site, resolves there. User spans stay
//! on the tokens an error points at: types, and the paths of traits and their functions.

use proc_macro2::{Ident, Span};

/// The generated local `name`.
pub(crate) fn local(name: &str) -> Ident {
    Ident::new(name, Span::mixed_site())
}

/// The generated local `name`, shown at `at` (where an error about it points).
pub(crate) fn local_at(name: &str, at: Span) -> Ident {
    Ident::new(name, Span::mixed_site().located_at(at))
}

/// `self` of a generated method, shown at `at`.
pub(crate) fn receiver(at: Span) -> Ident {
    Ident::new("self", Span::call_site().located_at(at))
}
