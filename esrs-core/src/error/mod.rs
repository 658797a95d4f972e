//! Why a value was refused: the detailed errors inside [`crate::Error`], and
//! [`ErrorChain`], which shows an error with its causes.
//!
//! [`crate::Error`], [`crate::Conflict`], [`crate::DecodeError`], [`crate::ExecuteError`] and
//! [`crate::Result`] are at the crate root; this module holds the errors of constructors and
//! encoders, which convert into [`crate::Error`] with `?`.

mod chain;
pub(crate) mod runtime;

pub use chain::ErrorChain;
pub(crate) use runtime::{BoxError, Conflict, Error, Result};

pub use crate::envelope::MetadataError;
pub use crate::event::EncodeError;
pub use crate::idempotency::IdempotencyKeyError;
pub use crate::stream::StreamIdError;
