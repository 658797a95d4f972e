//! Support for the code that `#[derive(Event)]` and `#[aggregate]` generate.
//!
//! Re-exported through `esrs_core::__private`; not a public API.

use std::fmt::Display;
use std::marker::PhantomData;

use serde_json::value::RawValue;

use crate::aggregate::Aggregate;
use crate::event::{DecodeError, EncodeError, Event, IntoEvents, Payload};
use crate::snapshot::SnapshotKey;

pub use crate::catalog::{AggregateInfo, EventInfo};
pub use inventory;
pub use schemars;

/// The JSON Schema of an event's payload, from the `JsonSchema` of the mirror of its struct
/// that `#[derive(Event)]` declares (draft 2020-12, nested types under `$defs`).
pub fn event_schema<T: schemars::JsonSchema>() -> serde_json::Value {
    crate::catalog::schema_of::<T>()
}

/// A field of an event has a JSON Schema.
#[diagnostic::on_unimplemented(
    message = "the event field type `{Self}` has no JSON Schema, which the event catalog records for every event",
    label = "no `schemars::JsonSchema` for `{Self}`",
    note = "add `#[derive(schemars::JsonSchema)]` to `{Self}` (with `schemars = \"1\"` in your dependencies), or mark the field `#[event(schema_any)]` (any value), or the event `#[event(schema = false)]`"
)]
pub trait FieldSchema: schemars::JsonSchema {}
impl<T: schemars::JsonSchema + ?Sized> FieldSchema for T {}

/// Requires `T: FieldSchema`; called by the schema function of `#[derive(Event)]` at each
/// field, so a missing schema is reported there with what to do.
pub const fn field_has_schema<T: FieldSchema + ?Sized>() {}

/// Whether `name` is in `list`, in a constant expression.
pub const fn str_in(name: &str, list: &[&str]) -> bool {
    let mut i = 0;
    while i < list.len() {
        if str_eq(name, list[i]) {
            return true;
        }
        i += 1;
    }
    false
}

/// Whether two lists share a name, in a constant expression.
pub const fn lists_meet(a: &[&str], b: &[&str]) -> bool {
    let mut i = 0;
    while i < a.len() {
        if str_in(a[i], b) {
            return true;
        }
        i += 1;
    }
    false
}

/// Compares two strings in a constant expression; used to reject two events of one
/// aggregate stored under one name.
pub const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// A snapshot key in a constant expression.
pub const fn snapshot_key(schema_version: u32, fingerprint: u64) -> SnapshotKey {
    SnapshotKey {
        schema_version,
        fingerprint,
    }
}

/// Decodes the payload of event `T` stored at its current version.
pub fn parse_event<T: Event + DecodableEvent>(
    version: u32,
    payload: &str,
) -> Result<T, DecodeError> {
    if T::PERSONAL {
        return crate::personal::parse_personal(version, payload);
    }
    DecodeError::parse(T::NAME, version, payload)
}

/// Encodes the payload of an event stored under `name`.
pub fn encode_event<T: Event + EncodableEvent>(
    name: &'static str,
    event: &T,
) -> Result<Payload, EncodeError> {
    if T::PERSONAL {
        return crate::personal::encode_personal(name, event);
    }
    crate::event::encode_json(name, event)
}

/// The subjects of an event's personal fields, each once.
pub fn subjects_of(fields: Vec<crate::personal::PersonalField>) -> Vec<String> {
    let mut subjects: Vec<String> = Vec::new();
    for field in fields {
        if !subjects.iter().any(|s| s == field.subject()) {
            subjects.push(field.subject().to_owned());
        }
    }
    subjects
}

/// A field marked `#[event(personal)]`: of type `Personal<T>`.
#[diagnostic::on_unimplemented(
    message = "the field marked #[event(personal)] has type `{Self}`, which cannot say that it was forgotten",
    label = "not `esrs_core::personal::Personal<_>`",
    note = "give the field the type `esrs_core::personal::Personal<{Self}>`: it is `Known(value)` until the subject is forgotten, then `Forgotten`"
)]
pub trait PersonalValue {
    /// The field's entry in [`Event::personal_fields`].
    fn personal_field(&self, name: &'static str, subject: String)
    -> crate::personal::PersonalField;
}

impl<T> PersonalValue for crate::personal::Personal<T> {
    fn personal_field(
        &self,
        name: &'static str,
        subject: String,
    ) -> crate::personal::PersonalField {
        crate::personal::PersonalField::new(self, name, subject)
    }
}

/// The field marked `#[event(subject)]`: its text names the subject.
#[diagnostic::on_unimplemented(
    message = "the field marked #[event(subject)] has type `{Self}`, which does not implement `Display`",
    label = "a subject id is written as text",
    note = "use a `String`, a `Uuid`, a number or another type that implements `std::fmt::Display`"
)]
pub trait SubjectId {
    /// The subject's id as text.
    fn subject_id(&self) -> String;
}

impl<T: Display + ?Sized> SubjectId for T {
    fn subject_id(&self) -> String {
        self.to_string()
    }
}

/// How the state of aggregate `A` is written to and read from snapshots.
pub struct SnapshotCodec<A> {
    /// Encodes the state.
    pub encode: fn(&A) -> Option<Result<Payload, EncodeError>>,
    /// Decodes the state.
    pub decode: fn(&RawValue) -> Option<Result<A, serde_json::Error>>,
}

impl<A> std::fmt::Debug for SnapshotCodec<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SnapshotCodec")
    }
}

/// The JSON snapshot codec of aggregate `A`. Both generated snapshot methods call this one
/// function, so a state that is not serializable is reported once.
pub fn snapshot_codec<A: Aggregate + SnapshotState>() -> SnapshotCodec<A> {
    SnapshotCodec {
        encode: |state| Some(crate::aggregate::encode_snapshot(A::NAME, state)),
        decode: |payload| Some(crate::aggregate::decode_snapshot(payload)),
    }
}

/// Runs a payload-level upcaster on a payload stored at `from`, giving the payload of a
/// later version.
pub fn run_payload_upcaster<E: Display>(
    name: &'static str,
    from: u32,
    payload: &str,
    upcaster: fn(serde_json::Value) -> Result<serde_json::Value, E>,
) -> Result<Box<RawValue>, DecodeError> {
    let value: serde_json::Value = DecodeError::parse(name, from, payload)?;
    let value = upcaster(value).map_err(|e| DecodeError::Upcast {
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

/// The previous version of an event turns into the current one.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is the `upcast_from` of `{T}` but cannot be converted into it",
    label = "no `From<{Self}>` for `{T}`",
    note = "implement `From<{Self}> for {T}`: it upcasts a decoded old event to the current version"
)]
pub trait UpcastInto<T> {
    /// Converts the old version into the new one.
    fn upcast_into(self) -> T;
}

impl<P: Into<T>, T> UpcastInto<T> for P {
    fn upcast_into(self) -> T {
        self.into()
    }
}

/// An event's payload can be read from JSON.
#[diagnostic::on_unimplemented(
    message = "the event `{Self}` cannot be decoded: it does not implement serde's `Deserialize`",
    label = "needs `#[derive(serde::Deserialize)]`",
    note = "add `#[derive(serde::Deserialize)]` to `{Self}`"
)]
pub trait DecodableEvent: serde::de::DeserializeOwned {}
impl<T: serde::de::DeserializeOwned> DecodableEvent for T {}

/// An event's payload can be written as JSON.
#[diagnostic::on_unimplemented(
    message = "the event `{Self}` cannot be stored: it does not implement serde's `Serialize`",
    label = "needs `#[derive(serde::Serialize)]`",
    note = "add `#[derive(serde::Serialize)]` to `{Self}`; every event an aggregate applies is stored"
)]
pub trait EncodableEvent: serde::Serialize {}
impl<T: serde::Serialize + ?Sized> EncodableEvent for T {}

/// An aggregate's state can be written to and read from a snapshot.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has `snapshot_every` but cannot be snapshotted: it must implement serde's `Serialize` and `Deserialize`",
    label = "the state is stored as JSON in snapshots",
    note = "add `#[derive(serde::Serialize, serde::Deserialize)]` to `{Self}`, or remove `snapshot_every`"
)]
pub trait SnapshotState: serde::Serialize + serde::de::DeserializeOwned {}
impl<T: serde::Serialize + serde::de::DeserializeOwned> SnapshotState for T {}

/// Probes the success type `T` of a command of an aggregate whose event enum is `E`: when
/// `T` is an event type, it must be one of the aggregate's events.
///
/// Method resolution picks [`EventCommand::check_command`] when `T: Event` (and the
/// compiler then demands `T: IntoEvents<E>`), else the no-op
/// [`OtherCommand::check_command`]: a query returning something else is not a command.
pub struct CommandProbe<T, E>(PhantomData<fn() -> (T, E)>);

impl<T, E> CommandProbe<T, E> {
    /// The probe.
    pub const NEW: Self = Self(PhantomData);
}

impl<T, E> std::fmt::Debug for CommandProbe<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CommandProbe")
    }
}

/// See [`CommandProbe`].
pub trait EventCommand<T, E> {
    /// Requires the event returned by a command to be one of the aggregate's.
    fn check_command(&self)
    where
        T: IntoEvents<E>,
    {
    }
}

impl<T: Event, E> EventCommand<T, E> for CommandProbe<T, E> {}

/// See [`CommandProbe`].
pub trait OtherCommand {
    /// Accepts anything that is not an event type.
    fn check_command(&self) {}
}

impl<T, E> OtherCommand for &CommandProbe<T, E> {}
