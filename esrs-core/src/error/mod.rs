//! Why a value was refused: the detailed errors inside [`crate::Error`].
//!
//! [`crate::Error`], [`crate::Conflict`], [`crate::DecodeError`], [`crate::ExecuteError`] and
//! [`crate::Result`] are at the crate root; this module holds the errors of constructors and
//! encoders, which convert into [`crate::Error`] with `?`.

pub(crate) mod runtime;

pub(crate) use runtime::{BoxError, Conflict, Error, Result};

pub use crate::envelope::MetadataError;
pub use crate::event::EncodeError;
pub use crate::idempotency::IdempotencyKeyError;
pub use crate::stream::StreamIdError;
