//! What esrs requires of the types a program gives it, as the traits its compile errors name.
//!
//! `#[derive(Event)]` and `#[aggregate]` check each requirement on the user's own type, at
//! the user's own span, through one of these traits; the error then says what to add. Every
//! trait here is implemented for every type that meets the requirement, so a program never
//! implements or names them.
//!
//! | requirement | trait |
//! |---|---|
//! | an event an aggregate applies implements `Serialize` | [`StoredEvent`] |
//! | an event implements `Deserialize` | [`DecodableEvent`] |
//! | the state implements `Default`, the start of its fold | [`DefaultState`] |
//! | a snapshotted state implements `Serialize` and `Deserialize` | [`SnapshotState`] |
//! | an event implements what the event enum's default derives need | [`EventDebug`], [`EventClone`], [`EventPartialEq`] |
//! | an event's field type has a JSON Schema | [`EventFieldSchema`], through [`FieldSchema`] |
//! | an `upcast_from` type converts into the event | [`UpcastInto`] |
//! | a payload upcaster has the upcaster's signature | [`PayloadUpcaster`] |
//! | a `#[event(personal)]` field is a `Personal<T>`; its subject is `Display` | [`PersonalValue`], [`SubjectId`] |
//! | every event a command returns has a handler | [`HandledEvent`] |
//! | a command returns its events in a form the repository takes | [`CommandOutput`], [`NotInImplTrait`] |
//! | the events of an aggregate are stored under distinct names and aliases | [`DistinctStoredNames`], [`DistinctAliases`] |
//! | `require_event_names`: every event has `#[event(name = "…")]` | [`ExplicitEventName`] |
//! | an `upcast_from` type has a lower version, the same stored name, and no version between them is left unread | [`LowerVersion`], [`SameStoredName`], [`NoVersionGap`] |
//!
//! The checks of constants (stored names, versions) are answered by [`Satisfied`]: `()`
//! when they hold, which implements their trait, and [`Unmet`] when they do not.

use std::fmt::Display;

use serde_json::value::RawValue;

use crate::aggregate::Aggregate;
use crate::event::{DecodeError, EncodeError, IntoEvents, Payload};
use crate::personal::PersonalField;

/// An event an aggregate applies can be stored: it implements serde's `Serialize`.
#[diagnostic::on_unimplemented(
    message = "the event `{Self}` cannot be stored: it does not implement serde's `Serialize`",
    label = "needs `#[derive(serde::Serialize)]`",
    note = "add `#[derive(serde::Serialize)]` to `{Self}`; every event an aggregate applies is stored"
)]
pub trait StoredEvent {
    /// Encodes the event stored under `name`; `personal` holds its personal fields when it
    /// has any.
    #[doc(hidden)]
    fn __encode(
        &self,
        name: &'static str,
        personal: Option<Vec<PersonalField>>,
    ) -> Result<Payload, EncodeError>;
}

#[diagnostic::do_not_recommend]
impl<T: serde::Serialize> StoredEvent for T {
    #[inline]
    fn __encode(
        &self,
        name: &'static str,
        personal: Option<Vec<PersonalField>>,
    ) -> Result<Payload, EncodeError> {
        match personal {
            Some(fields) => crate::personal::encode_personal(name, fields, self),
            None => crate::event::encode_json(name, self),
        }
    }
}

/// An event can be decoded: it implements serde's `Deserialize`.
#[diagnostic::on_unimplemented(
    message = "the event `{Self}` cannot be decoded: it does not implement serde's `Deserialize`",
    label = "needs `#[derive(serde::Deserialize)]`",
    note = "add `#[derive(serde::Deserialize)]` to `{Self}`: stored events are read back into it"
)]
pub trait DecodableEvent: Sized {
    /// Decodes the payload of the event stored under `name` at its current version;
    /// `personal` reads the personal fields of a decoded event that has any.
    #[doc(hidden)]
    fn __decode(
        name: &'static str,
        version: u32,
        payload: &str,
        personal: Option<fn(&Self) -> Vec<PersonalField>>,
    ) -> Result<Self, DecodeError>;
}

#[diagnostic::do_not_recommend]
impl<T: serde::de::DeserializeOwned> DecodableEvent for T {
    #[inline]
    fn __decode(
        name: &'static str,
        version: u32,
        payload: &str,
        personal: Option<fn(&Self) -> Vec<PersonalField>>,
    ) -> Result<Self, DecodeError> {
        match personal {
            Some(fields) => crate::personal::parse_personal(name, version, payload, fields),
            None => DecodeError::parse(name, version, payload),
        }
    }
}

/// The state of an aggregate implements `Default`: its fold starts from
/// `Default::default()` and applies the stored events in order.
#[diagnostic::on_unimplemented(
    message = "the aggregate state `{Self}` does not implement `Default`, the state its fold starts from",
    label = "needs `#[derive(Default)]`",
    note = "add `#[derive(Default)]` to `{Self}`, or implement `Default` for it: a stream with no events yet is `{Self}::default()`, and every load applies the stored events to it"
)]
pub trait DefaultState {
    /// Names the requirement at the state type.
    #[doc(hidden)]
    fn __check() {}
}

#[diagnostic::do_not_recommend]
impl<T: Default> DefaultState for T {}

/// An event of an aggregate whose event enum has the default derives implements `Debug`.
#[diagnostic::on_unimplemented(
    message = "the event `{Self}` does not implement `Debug`, which the aggregate's event enum derives",
    label = "needs `#[derive(Debug)]`",
    note = "add `#[derive(Debug)]` to `{Self}`, or choose the event enum's derives with #[aggregate(derive(...))]"
)]
pub trait EventDebug {
    /// The event as a `Debug` value.
    #[doc(hidden)]
    fn __as_debug(&self) -> &dyn std::fmt::Debug;
}

#[diagnostic::do_not_recommend]
impl<T: std::fmt::Debug> EventDebug for T {
    #[inline]
    fn __as_debug(&self) -> &dyn std::fmt::Debug {
        self
    }
}

/// An event of an aggregate whose event enum has the default derives implements `Clone`.
#[diagnostic::on_unimplemented(
    message = "the event `{Self}` does not implement `Clone`, which the aggregate's event enum derives",
    label = "needs `#[derive(Clone)]`",
    note = "add `#[derive(Clone)]` to `{Self}`, or choose the event enum's derives with #[aggregate(derive(...))]"
)]
pub trait EventClone: Sized {
    /// A copy of the event.
    #[doc(hidden)]
    fn __clone(&self) -> Self;
}

// Bounded by `DecodableEvent` too, which no reference implements: an event without `Clone`
// is then not told to clone a reference to it instead.
#[diagnostic::do_not_recommend]
impl<T: Clone + DecodableEvent> EventClone for T {
    #[inline]
    fn __clone(&self) -> Self {
        self.clone()
    }
}

/// An event of an aggregate whose event enum has the default derives implements
/// `PartialEq`.
#[diagnostic::on_unimplemented(
    message = "the event `{Self}` does not implement `PartialEq`, which the aggregate's event enum derives",
    label = "needs `#[derive(PartialEq)]`",
    note = "add `#[derive(PartialEq)]` to `{Self}` (tests compare the events a command returns), or choose the event enum's derives with #[aggregate(derive(Debug, Clone))]"
)]
pub trait EventPartialEq {
    /// Whether two events are equal.
    #[doc(hidden)]
    fn __eq(&self, other: &Self) -> bool;
}

#[diagnostic::do_not_recommend]
impl<T: PartialEq> EventPartialEq for T {
    #[inline]
    fn __eq(&self, other: &Self) -> bool {
        self == other
    }
}

/// A snapshotted state is written to and read from JSON: it implements serde's
/// `Serialize` and `Deserialize`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has `snapshot_every` but cannot be snapshotted: it must implement serde's `Serialize` and `Deserialize`",
    label = "the state is stored as JSON in snapshots",
    note = "add `#[derive(serde::Serialize, serde::Deserialize)]` to `{Self}`, or remove `snapshot_every`"
)]
pub trait SnapshotState: Sized {
    /// Encodes the state as the snapshot of aggregate `name`.
    #[doc(hidden)]
    fn __encode_snapshot(&self, name: &'static str) -> Result<Payload, EncodeError>;
    /// Decodes a snapshot.
    #[doc(hidden)]
    fn __decode_snapshot(payload: &RawValue) -> Result<Self, serde_json::Error>;
}

#[diagnostic::do_not_recommend]
impl<T: serde::Serialize + serde::de::DeserializeOwned> SnapshotState for T {
    #[inline]
    fn __encode_snapshot(&self, name: &'static str) -> Result<Payload, EncodeError> {
        crate::aggregate::encode_snapshot(name, self)
    }

    #[inline]
    fn __decode_snapshot(payload: &RawValue) -> Result<Self, serde_json::Error> {
        crate::aggregate::decode_snapshot(payload)
    }
}

/// A field of an event has a JSON Schema, which the event catalog records.
#[diagnostic::on_unimplemented(
    message = "the event field type `{Self}` has no JSON Schema, which the event catalog records for every event",
    label = "no `schemars::JsonSchema` for `{Self}`",
    note = "add `#[derive(schemars::JsonSchema)]` to `{Self}` (with `schemars = \"1\"` in your dependencies), or mark the field `#[event(schema_any)]` (any value), or the event `#[event(schema = false)]`"
)]
pub trait EventFieldSchema: schemars::JsonSchema {
    /// Names the requirement at a field whose schema is not read through [`FieldSchema`].
    #[doc(hidden)]
    fn __has_schema() {}
}

#[diagnostic::do_not_recommend]
impl<T: schemars::JsonSchema + ?Sized> EventFieldSchema for T {}

/// The JSON Schema of an event's field of type `T`: `T`'s own, when `T` meets
/// [`EventFieldSchema`].
///
/// The schema of an event is derived with each field's schema taken from here, so that a
/// type without a schema is reported once, by [`EventFieldSchema`].
#[derive(Debug)]
pub struct FieldSchema<T: ?Sized>(std::marker::PhantomData<T>);

impl<T: EventFieldSchema + ?Sized> schemars::JsonSchema for FieldSchema<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }

    fn schema_id() -> std::borrow::Cow<'static, str> {
        T::schema_id()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }

    fn _schemars_private_non_optional_json_schema(
        generator: &mut schemars::SchemaGenerator,
    ) -> schemars::Schema {
        T::_schemars_private_non_optional_json_schema(generator)
    }

    fn _schemars_private_is_option() -> bool {
        T::_schemars_private_is_option()
    }
}

/// The `upcast_from` type of an event turns into the event.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is the `upcast_from` of `{T}` but cannot be converted into it",
    label = "no `From<{Self}>` for `{T}`",
    note = "implement `From<{Self}> for {T}`: it upcasts a decoded old event to the current version"
)]
pub trait UpcastInto<T> {
    /// Converts the old version into the new one.
    #[doc(hidden)]
    fn __upcast_into(self) -> T;
}

#[diagnostic::do_not_recommend]
impl<P: Into<T>, T> UpcastInto<T> for P {
    #[inline]
    fn __upcast_into(self) -> T {
        self.into()
    }
}

/// A payload upcaster: `fn(serde_json::Value) -> Result<serde_json::Value, E>` with
/// `E: Display`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a payload upcaster",
    label = "not a `fn(serde_json::Value) -> Result<serde_json::Value, E>`",
    note = "a payload upcaster is a `fn(serde_json::Value) -> Result<serde_json::Value, E>` with `E: Display`: it turns the JSON stored at `from` into the JSON of the next version"
)]
pub trait PayloadUpcaster<E> {
    /// Runs the upcaster on a payload of the event stored under `name` at version `from`.
    #[doc(hidden)]
    fn __upcast(
        &self,
        name: &'static str,
        from: u32,
        payload: &str,
    ) -> Result<Box<RawValue>, DecodeError>;
}

#[diagnostic::do_not_recommend]
impl<F, E> PayloadUpcaster<E> for F
where
    F: Fn(serde_json::Value) -> Result<serde_json::Value, E>,
    E: Display,
{
    fn __upcast(
        &self,
        name: &'static str,
        from: u32,
        payload: &str,
    ) -> Result<Box<RawValue>, DecodeError> {
        let value: serde_json::Value = DecodeError::parse(name, from, payload)?;
        let value = self(value).map_err(|e| DecodeError::Upcast {
            name,
            from,
            message: e.to_string(),
        })?;
        serde_json::value::to_raw_value(&value).map_err(|source| DecodeError::Malformed {
            name,
            version: from,
            source,
        })
    }
}

/// A field marked `#[event(personal)]` is of type `Personal<T>`.
#[diagnostic::on_unimplemented(
    message = "the field marked #[event(personal)] has type `{Self}`, which cannot say that it was forgotten",
    label = "not `esrs_core::personal::Personal<_>`",
    note = "give the field the type `esrs_core::personal::Personal<T>` of the value it holds, e.g. `Personal<String>` or `Personal<Option<String>>`: it is `Known(value)` until the subject is forgotten, then `Forgotten`"
)]
pub trait PersonalValue {
    /// The field's entry in [`Event::personal_fields`](crate::Event::personal_fields).
    #[doc(hidden)]
    fn __personal_field(&self, name: &'static str, subject: String) -> PersonalField;
}

#[diagnostic::do_not_recommend]
impl<T> PersonalValue for crate::personal::Personal<T> {
    fn __personal_field(&self, name: &'static str, subject: String) -> PersonalField {
        PersonalField::new(self, name, subject)
    }
}

/// The field marked `#[event(subject)]` is written as text: it implements `Display`.
#[diagnostic::on_unimplemented(
    message = "the field marked #[event(subject)] has type `{Self}`, which does not implement `Display`",
    label = "a subject id is written as text",
    note = "use a `String`, a `Uuid`, a number or another type that implements `std::fmt::Display`"
)]
pub trait SubjectId {
    /// The subject's id as text.
    #[doc(hidden)]
    fn __subject_id(&self) -> String;
}

#[diagnostic::do_not_recommend]
impl<T: Display + ?Sized> SubjectId for T {
    fn __subject_id(&self) -> String {
        self.to_string()
    }
}

/// An event a method of aggregate `A` returns is one of `A`'s events.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is returned by a method of the aggregate `{A}`, which has no #[apply] handler for it",
    label = "not an event of `{A}`",
    note = "add an #[apply] handler `fn …(&mut self, event: &{Self})` to the #[aggregate] impl of `{A}`, or return one of its events"
)]
pub trait HandledEvent<A> {
    /// Names the requirement at the event type.
    #[doc(hidden)]
    fn __check(_: std::marker::PhantomData<Self>) {}
}

#[diagnostic::do_not_recommend]
impl<T: IntoEvents<A::Event> + ?Sized, A: Aggregate> HandledEvent<A> for T {}

/// A command of aggregate `A` returns its events in a form the repository takes.
#[diagnostic::on_unimplemented(
    message = "a command of the aggregate `{A}` returns `Result<{Self}, _>`, a form of events the repository cannot take",
    label = "not one of the forms a command returns events in",
    note = "return `Result<T, _>` where `T` is one event type, or a `Vec` or an `Option` of one event type, or the aggregate's event enum alone, in a `Vec`, an `Option` or an array, or `()` for no event"
)]
pub trait CommandOutput<A> {
    /// Names the requirement at the return type.
    #[doc(hidden)]
    fn __check(_: std::marker::PhantomData<Self>) {}
}

#[diagnostic::do_not_recommend]
impl<T: IntoEvents<A::Event> + ?Sized, A: Aggregate> CommandOutput<A> for T {}

/// No event of aggregate `A` is returned inside an `impl Trait`, from which the repository
/// cannot take it.
#[diagnostic::on_unimplemented(
    message = "a method of the aggregate `{A}` returns `{Self}` inside an `impl Trait`, from which the repository cannot take events",
    label = "events inside an `impl Trait`",
    note = "return the events as a `Vec` (`Result<Vec<{Self}>, _>`), or as the aggregate's event enum in a `Vec`"
)]
pub trait NotInImplTrait<A> {
    /// Names the requirement at the event type.
    #[doc(hidden)]
    fn __check(_: std::marker::PhantomData<Self>) {}
}

#[diagnostic::do_not_recommend]
impl<A> NotInImplTrait<A> for () {}

/// A check of constants: `Satisfied<{ condition }>` answers `()` when the condition holds,
/// which implements the check's trait, and [`Unmet`] when it does not.
#[derive(Debug)]
pub struct Satisfied<const OK: bool>;

/// The answer of a check of constants that failed: it implements none of the checks' traits.
#[derive(Debug)]
pub struct Unmet;

/// The answer of a check of constants.
pub trait Answer {
    /// `()` when the condition holds, else [`Unmet`].
    type Is;
}

impl Answer for Satisfied<true> {
    type Is = ();
}

impl Answer for Satisfied<false> {
    type Is = Unmet;
}

macro_rules! checks {
    ($(
        $(#[$meta:meta])*
        $name:ident<$($param:ident),*>;
    )*) => {$(
        $(#[$meta])*
        pub trait $name<$($param),*> {
            /// `()` when the requirement holds. Named in the type of a generated constant, so
            /// that the check runs with the item signatures, before any error of the items
            /// a broken requirement makes collide.
            #[doc(hidden)]
            type Holds;
        }

        #[diagnostic::do_not_recommend]
        impl<$($param),*> $name<$($param),*> for () {
            type Holds = ();
        }
    )*};
}

checks! {
    /// Two events of aggregate `A` are stored under distinct names.
    #[diagnostic::on_unimplemented(
        message = "`{E1}` and `{E2}` are stored under the same event name, so the aggregate `{A}` could not tell their stored events apart",
        label = "stored under the name of `{E1}`",
        note = "give one of them its own #[event(name = \"…\")]; if both name the same type (through a `type` alias or another path), keep one handler"
    )]
    DistinctStoredNames<E1, E2, A>;

    /// No stored name or alias of one event of aggregate `A` is a name or alias of another.
    #[diagnostic::on_unimplemented(
        message = "`{E1}` and `{E2}` share a stored name or alias, so the aggregate `{A}` could not tell their stored events apart",
        label = "a name or alias of `{E1}` too",
        note = "an alias is a former name of one event only: remove it from one of them"
    )]
    DistinctAliases<E1, E2, A>;

    /// `#[aggregate(require_event_names)]`: the event has `#[event(name = "…")]`.
    #[diagnostic::on_unimplemented(
        message = "the aggregate `{A}` has `require_event_names`, but its event `{E}` takes its stored name from its Rust type's name, which a rename of the type would change",
        label = "no #[event(name = \"…\")]",
        note = "give `{E}` #[event(name = \"…\")] with the name it is stored under today"
    )]
    ExplicitEventName<E, A>;

    /// The `upcast_from` type has a lower version than the event.
    #[diagnostic::on_unimplemented(
        message = "the `upcast_from` type `{P}` must have a lower version than `{E}`",
        label = "not an older version of `{E}`",
        note = "lower `{P}`'s #[event(version = …)] or raise `{E}`'s"
    )]
    LowerVersion<P, E>;

    /// The `upcast_from` type is stored under the event's name.
    #[diagnostic::on_unimplemented(
        message = "the `upcast_from` type `{P}` must be stored under the same name as `{E}`",
        label = "stored under another name than `{E}`",
        note = "give `{P}` the #[event(name = \"…\")] of `{E}`: they are versions of one stored event"
    )]
    SameStoredName<P, E>;

    /// Every version between the `upcast_from` type's and the event's has a reader.
    #[diagnostic::on_unimplemented(
        message = "stored versions between the version of `{P}` and the version of `{E}` would not load: nothing reads them",
        label = "`{P}` reads only up to its own version",
        note = "add `upcast(from = N, with = path::to::function)` to `{E}` for each version between them, or make `{P}` the version just below `{E}`"
    )]
    NoVersionGap<P, E>;
}
