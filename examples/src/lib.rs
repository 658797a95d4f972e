//! Runnable examples of esrs, the programs a newcomer reads first.
//!
//! - [`cart`]: a shopping cart with snapshots, idempotency keys and an upcast event;
//! - [`bank`]: a bank account that refuses overdrafts and explains its balance from its
//!   history, as of any earlier version or time;
//! - [`loyalty`]: a policy that turns every order into loyalty points, exactly once;
//! - [`tour`]: the main example (`cargo run -p esrs-examples`), a walk through the cart and
//!   the bank account against a real store.
//!
//! The domain code lives in this library so that the programs in `src/bin` and `src/main.rs`
//! and the tests in `tests/` share it.

pub mod bank;
pub mod cart;
pub mod loyalty;
pub mod tour;

use esrs_core::{DecodeError, Event};
use serde_json::value::RawValue;

/// Decodes an event type that has one stored version, its current one.
fn decode_current<T>(version: u32, payload: &RawValue) -> Result<T, DecodeError>
where
    T: Event + serde::de::DeserializeOwned,
{
    if version == T::VERSION {
        DecodeError::parse(T::NAME, version, payload)
    } else {
        Err(DecodeError::UnknownVersion {
            name: T::NAME,
            version,
            known: T::known_versions(),
        })
    }
}

/// The event enum of an aggregate: `EventSet`, and `From`/`IntoEvents` for each event type.
macro_rules! event_enum {
    ($set:ident { $($variant:ident($ty:ty)),+ $(,)? }) => {
        impl ::esrs_core::EventSet for $set {
            const NAMES: &'static [&'static str] = &[$(<$ty as ::esrs_core::Event>::NAME),+];

            fn name(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => <$ty as ::esrs_core::Event>::NAME,)+
                }
            }

            fn version(&self) -> u32 {
                match self {
                    $(Self::$variant(_) => <$ty as ::esrs_core::Event>::VERSION,)+
                }
            }

            fn encode(&self) -> ::core::result::Result<::esrs_core::Payload, ::esrs_core::EncodeError> {
                match self {
                    $(Self::$variant(e) => ::esrs_core::encode_json(<$ty as ::esrs_core::Event>::NAME, e),)+
                }
            }

            fn decode(
                name: &str,
                version: u32,
                payload: &::serde_json::value::RawValue,
            ) -> ::core::result::Result<Self, ::esrs_core::DecodeError> {
                $(
                    if name == <$ty as ::esrs_core::Event>::NAME {
                        return <$ty as ::esrs_core::Event>::decode(version, payload).map(Self::$variant);
                    }
                )+
                Err(::esrs_core::DecodeError::UnknownName {
                    name: name.to_owned(),
                    known: Self::NAMES.to_vec(),
                })
            }
        }

        $(
            impl ::core::convert::From<$ty> for $set {
                fn from(e: $ty) -> Self {
                    Self::$variant(e)
                }
            }

            impl ::esrs_core::IntoEvents<$set> for $ty {
                fn into_events(self) -> Vec<$set> {
                    vec![Self::into(self)]
                }
            }
        )+
    };
}
pub(crate) use event_enum;
