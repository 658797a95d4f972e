//! Support for the code that `#[derive(Event)]` and `#[aggregate]` generate.
//!
//! Re-exported through `esrs_core::__private`; not a public API.

use std::marker::PhantomData;

use crate::event::{Event, IntoEvents};
use crate::snapshot::SnapshotKey;

pub use crate::catalog::schemars;
pub use crate::catalog::{AggregateInfo, EventInfo};

/// The catalog entry of the aggregate stored under `name`, whose events are `E`.
pub const fn aggregate_info<E: crate::event::EventSet>(
    name: &'static str,
    rust_type: fn() -> &'static str,
) -> AggregateInfo {
    AggregateInfo::new(name, rust_type, E::NAMES, E::ALIASES)
}
pub use inventory;

/// The JSON Schema of an event's payload, from the `JsonSchema` of the mirror of its struct
/// that `#[derive(Event)]` declares (draft 2020-12, nested types under `$defs`).
pub fn event_schema<T: schemars::JsonSchema>() -> serde_json::Value {
    crate::catalog::schema_of::<T>()
}

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

/// Whether every version strictly between `older` and `version` is in `read` (the versions
/// an event's payload upcasters lead to `version` from), in a constant expression: an
/// `upcast_from` type that reads up to `older` then leaves no stored version unread.
pub const fn no_version_gap(older: u32, version: u32, read: &[u32]) -> bool {
    let mut v = older.saturating_add(1);
    while v < version {
        let mut i = 0;
        let mut found = false;
        while i < read.len() {
            if read[i] == v {
                found = true;
            }
            i += 1;
        }
        if !found {
            return false;
        }
        v += 1;
    }
    true
}

/// Probes the types a method of an aggregate returns, for the checks of
/// [`HandledEvent`](crate::requirements::HandledEvent) and
/// [`CommandOutput`](crate::requirements::CommandOutput): `R` is the whole return type, `P`
/// one type named in it, `E` the aggregate's event enum.
///
/// Method resolution picks the method of the trait whose impl applies to the probe (by
/// value) before the fallback (on a reference to it): each pick returns the type to check,
/// or `()` when there is nothing to check, which meets every requirement.
pub struct Probe<R: ?Sized, P: ?Sized, E>(Probed<R, P, E>);

/// The types a [`Probe`] is about, without owning any.
type Probed<R, P, E> = PhantomData<fn() -> (PhantomData<R>, PhantomData<P>, E)>;

impl<R: ?Sized, P: ?Sized, E> Probe<R, P, E> {
    /// The probe.
    pub const NEW: Self = Self(PhantomData);
}

impl<R: ?Sized, P: ?Sized, E> std::fmt::Debug for Probe<R, P, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Probe")
    }
}

/// A type named in a method's return type is an event: it must be one of the aggregate's.
pub trait EventLeaf {
    /// The event.
    type Leaf: ?Sized;
    /// The event to check.
    fn event_leaf(&self) -> PhantomData<Self::Leaf> {
        PhantomData
    }
}

impl<R: ?Sized, P: Event, E> EventLeaf for Probe<R, P, E> {
    type Leaf = P;
}

/// A type named in a method's return type that is not an event: nothing to check.
pub trait OtherLeaf {
    /// Nothing to check.
    fn event_leaf(&self) -> PhantomData<()> {
        PhantomData
    }
}

impl<R: ?Sized, P: ?Sized, E> OtherLeaf for &Probe<R, P, E> {}

/// A method returns `Result<T, _>` and `T` names events of the aggregate: `T` must be a
/// form a command returns events in.
pub trait EventsInResult {
    /// The success type.
    type Ok: ?Sized;
    /// The success type to check.
    fn events_in_result(&self) -> PhantomData<Self::Ok> {
        PhantomData
    }
}

impl<T, X, P: IntoEvents<E> + ?Sized, E> EventsInResult for Probe<Result<T, X>, P, E> {
    type Ok = T;
}

/// Not a `Result`, or no event of the aggregate in it: nothing to check.
pub trait OtherResult {
    /// Nothing to check.
    fn events_in_result(&self) -> PhantomData<()> {
        PhantomData
    }
}

impl<R: ?Sized, P: ?Sized, E> OtherResult for &Probe<R, P, E> {}

/// A type named inside an `impl Trait` of a method's return type holds events of the
/// aggregate.
pub trait EventsInOpaque {
    /// The events.
    type Events: ?Sized;
    /// The events to refuse.
    fn events_in_opaque(&self) -> PhantomData<Self::Events> {
        PhantomData
    }
}

impl<R: ?Sized, P: IntoEvents<E> + ?Sized, E> EventsInOpaque for Probe<R, P, E> {
    type Events = P;
}

/// No event of the aggregate: nothing to check.
pub trait OtherOpaque {
    /// Nothing to check.
    fn events_in_opaque(&self) -> PhantomData<()> {
        PhantomData
    }
}

impl<R: ?Sized, P: ?Sized, E> OtherOpaque for &Probe<R, P, E> {}
