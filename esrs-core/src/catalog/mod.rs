//! The program's catalog of event types and aggregates, registered by the macros.
//!
//! Every `#[derive(Event)]` registers its type and every `#[aggregate]` its aggregate at
//! link time (through the [`inventory`] crate, so registration needs no code at start-up and
//! no list kept by hand). Tools list the program's events with [`program`]; a start-up check
//! or a test calls [`check`] to find a stored name claimed by two unrelated types, or
//! a stream category claimed by two aggregates, anywhere in the program.
//!
//! The catalog holds what the linker kept: the types of every crate whose code the program
//! uses. A library crate that the program depends on but never calls into may be left out
//! of the binary, and its events with it.
//!
//! # The lock file: a schema registry in the repository
//!
//! Every event type also registers the JSON Schema of its payload (derived by schemars from
//! the struct and its serde attributes). [`write_lock`] writes the whole catalog — per
//! aggregate its events, per stored name its aliases, every version with its schema and the
//! upcast route from each old version — to a JSON file that the repository commits, and
//! [`verify_lock`] compares the program with that file and fails on a change that would
//! break stored events: one line in a test makes it a CI gate.
//!
//! ```no_run
//! #[test]
//! fn events_lock() {
//!     esrs_core::catalog::verify_lock(concat!(env!("CARGO_MANIFEST_DIR"), "/events.lock.json"))
//!         .unwrap();
//! }
//! ```
//!
//! `ESRS_UPDATE_CATALOG=1 cargo test` writes the compatible changes (a new event, a new
//! version with its upcaster, an optional field) to the file; [`verify_lock`] lists what
//! it checks, and [`BreakingChange`] every refusal with its fix.

mod compat;
mod lock;

pub use compat::BreakingChange;
pub use lock::{
    Lock, LockError, LockStatus, LockedAggregate, LockedEvent, LockedVersion, UPDATE_VAR,
    verify_lock, write_lock,
};
/// The `schemars` the catalog derives every payload's JSON Schema with: a type of your own in
/// an event derives its `JsonSchema` (with `schemars = "1"` in your dependencies).
pub use schemars;
/// The `serde_json` of payloads: a payload upcaster is a
/// `fn(serde_json::Value) -> Result<serde_json::Value, E>`.
pub use serde_json;

use std::any::TypeId;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::sync::OnceLock;

use crate::aggregate::Aggregate;
use crate::event::{Event, EventSet};

/// One event type of the program, as registered by `#[derive(Event)]`.
#[derive(Clone, Copy)]
pub struct EventInfo {
    name: &'static str,
    version: u32,
    aliases: &'static [&'static str],
    explicit_name: bool,
    rust_type: fn() -> &'static str,
    type_id: fn() -> TypeId,
    known_versions: fn() -> Vec<u32>,
    upcast_from: Option<TypeRef>,
    payload_upcasters: &'static [(u32, u32, &'static str)],
    schema: Option<fn() -> serde_json::Value>,
}

/// A type known by its id and name, both computed on demand.
#[derive(Clone, Copy)]
struct TypeRef {
    id: fn() -> TypeId,
    name: fn() -> &'static str,
}

impl EventInfo {
    /// The entry of event type `T`.
    pub const fn of<T: Event>() -> Self {
        Self {
            name: T::NAME,
            version: T::VERSION,
            aliases: T::ALIASES,
            explicit_name: T::EXPLICIT_NAME,
            rust_type: std::any::type_name::<T>,
            type_id: TypeId::of::<T>,
            known_versions: T::known_versions,
            upcast_from: None,
            payload_upcasters: &[],
            schema: None,
        }
    }

    /// The entry with the type's payload-level upcasters: `(from, to, function)` for each
    /// `#[event(upcast(from = …, to = …, with = function))]`.
    pub const fn with_payload_upcasters(
        self,
        upcasters: &'static [(u32, u32, &'static str)],
    ) -> Self {
        Self {
            payload_upcasters: upcasters,
            ..self
        }
    }

    /// The entry with the function that gives the payload's JSON Schema; called only when
    /// the catalog's lock is written or checked.
    pub const fn with_schema(self, schema: fn() -> serde_json::Value) -> Self {
        Self {
            schema: Some(schema),
            ..self
        }
    }

    /// The entry of an event type whose older versions are decoded through `P`.
    pub const fn with_upcast_from<P: ?Sized + 'static>(self) -> Self {
        Self {
            upcast_from: Some(TypeRef {
                id: TypeId::of::<P>,
                name: std::any::type_name::<P>,
            }),
            ..self
        }
    }

    /// The stored name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The version events of this type are written at.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Former stored names whose rows decode as this type (see [`Event::ALIASES`]).
    pub fn aliases(&self) -> &'static [&'static str] {
        self.aliases
    }

    /// Whether the stored name was written by the author rather than taken from the type's
    /// name (see [`Event::EXPLICIT_NAME`]).
    pub fn explicit_name(&self) -> bool {
        self.explicit_name
    }

    /// The payload-level upcasters, `(from, to, function)`, in declaration order.
    pub fn payload_upcasters(&self) -> &'static [(u32, u32, &'static str)] {
        self.payload_upcasters
    }

    /// The JSON Schema of this version's payload (draft 2020-12), computed on each call;
    /// `None` for a type without one (`#[event(schema = false)]`, a hand-written impl).
    pub fn schema(&self) -> Option<serde_json::Value> {
        self.schema.map(|schema| schema())
    }

    /// The Rust type, e.g. `my_app::cart::ItemAdded`.
    pub fn rust_type(&self) -> &'static str {
        (self.rust_type)()
    }

    /// Every stored version this type can decode, ascending, ending with
    /// [`EventInfo::version`].
    pub fn known_versions(&self) -> Vec<u32> {
        (self.known_versions)()
    }

    /// The stored versions older than [`EventInfo::version`] that this type still decodes.
    pub fn older_versions(&self) -> Vec<u32> {
        let mut known = self.known_versions();
        known.retain(|v| *v < self.version);
        known
    }

    /// The Rust type of the previous version (`#[event(upcast_from = …)]`), if any.
    pub fn upcast_from(&self) -> Option<&'static str> {
        self.upcast_from.map(|t| (t.name)())
    }

    fn type_id(&self) -> TypeId {
        (self.type_id)()
    }
}

impl fmt::Debug for EventInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventInfo")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("aliases", &self.aliases)
            .field("explicit_name", &self.explicit_name)
            .field("rust_type", &self.rust_type())
            .field("known_versions", &self.known_versions())
            .field("upcast_from", &self.upcast_from())
            .field("payload_upcasters", &self.payload_upcasters)
            .field("has_schema", &self.schema.is_some())
            .finish()
    }
}

/// One aggregate of the program, as registered by `#[aggregate]`.
#[derive(Clone, Copy)]
pub struct AggregateInfo {
    name: &'static str,
    rust_type: fn() -> &'static str,
    events: &'static [&'static str],
    aliases: &'static [&'static [&'static str]],
}

impl AggregateInfo {
    /// The entry of aggregate `A`.
    pub const fn of<A: Aggregate>() -> Self {
        Self {
            name: A::NAME,
            rust_type: std::any::type_name::<A>,
            events: <A::Event as EventSet>::NAMES,
            aliases: <A::Event as EventSet>::ALIASES,
        }
    }

    /// The entry of the aggregate stored under `name`, of Rust type `rust_type`, with its
    /// events' stored names and aliases.
    pub(crate) const fn new(
        name: &'static str,
        rust_type: fn() -> &'static str,
        events: &'static [&'static str],
        aliases: &'static [&'static [&'static str]],
    ) -> Self {
        Self {
            name,
            rust_type,
            events,
            aliases,
        }
    }

    /// The aggregate's stream category.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The Rust type of the aggregate's state.
    pub fn rust_type(&self) -> &'static str {
        (self.rust_type)()
    }

    /// The stored names of the aggregate's events.
    pub fn events(&self) -> &'static [&'static str] {
        self.events
    }

    /// The aliases of the event stored under `name`, one of [`AggregateInfo::events`].
    pub fn aliases_of(&self, name: &str) -> &'static [&'static str] {
        self.events
            .iter()
            .position(|n| *n == name)
            .and_then(|i| self.aliases.get(i).copied())
            .unwrap_or(&[])
    }

    /// Whether the aggregate's streams may hold events stored under `name`: one of its
    /// events' names or aliases.
    pub fn handles(&self, name: &str) -> bool {
        self.events.contains(&name) || self.aliases.iter().any(|a| a.contains(&name))
    }
}

impl fmt::Debug for AggregateInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AggregateInfo")
            .field("name", &self.name)
            .field("rust_type", &self.rust_type())
            .field("events", &self.events)
            .field("aliases", &self.aliases)
            .finish()
    }
}

inventory::collect!(EventInfo);
inventory::collect!(AggregateInfo);

/// Every event type and aggregate of the program, sorted by stored name.
#[derive(Debug, Clone)]
pub struct Catalog {
    events: Vec<EventInfo>,
    aggregates: Vec<AggregateInfo>,
}

/// The catalog of the running program: every type with `#[derive(Event)]` and every
/// `#[aggregate]` linked into it.
///
/// ```
/// use esrs_core::prelude::*;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
/// #[event(name = "Opened", version = 2, oldest_version = 2)]
/// struct Opened { at: u64 }
///
/// let catalog = esrs_core::catalog::program();
/// let opened = catalog.events_named("Opened").next().unwrap();
/// assert_eq!(opened.version(), 2);
/// assert!(opened.rust_type().ends_with("Opened"));
/// ```
///
/// The catalog is collected once per process, on the first call; later calls copy it.
pub fn program() -> Catalog {
    static PROGRAM: OnceLock<Catalog> = OnceLock::new();
    PROGRAM.get_or_init(collect).clone()
}

fn collect() -> Catalog {
    let mut events: Vec<EventInfo> = inventory::iter::<EventInfo>.into_iter().copied().collect();
    events.sort_by(|a, b| {
        (a.name, a.version, a.rust_type()).cmp(&(b.name, b.version, b.rust_type()))
    });
    let mut aggregates: Vec<AggregateInfo> = inventory::iter::<AggregateInfo>
        .into_iter()
        .copied()
        .collect();
    aggregates.sort_by(|a, b| (a.name, a.rust_type()).cmp(&(b.name, b.rust_type())));
    Catalog { events, aggregates }
}

/// Checks the program's catalog: see [`Catalog::check`].
///
/// Call it at start-up or in a test:
///
/// ```
/// esrs_core::catalog::check().expect("stored names are unique");
/// ```
pub fn check() -> Result<(), CatalogError> {
    program().check()
}

impl Catalog {
    /// Every event type, sorted by stored name, then version.
    pub fn events(&self) -> &[EventInfo] {
        &self.events
    }

    /// Every aggregate, sorted by stream category.
    pub fn aggregates(&self) -> &[AggregateInfo] {
        &self.aggregates
    }

    /// The event types stored under `name`: one type, or the versions of one event linked by
    /// `upcast_from`.
    pub fn events_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a EventInfo> + 'a {
        self.events.iter().filter(move |e| e.name == name)
    }

    /// The type that events stored under `name` are decoded as: the current version among
    /// the types of that name (the one that is not another's `upcast_from`); the first of
    /// them when [`Catalog::check`] would report the name.
    pub fn current(&self, name: &str) -> Option<&EventInfo> {
        let types: Vec<&EventInfo> = self.events.iter().filter(|e| e.name == name).collect();
        let older: HashSet<TypeId> = types
            .iter()
            .filter_map(|e| e.upcast_from.map(|t| (t.id)()))
            .collect();
        types
            .iter()
            .find(|e| !older.contains(&e.type_id()))
            .or(types.first())
            .copied()
    }

    /// The event type of the program whose Rust type has id `id`.
    fn by_type_id(&self, id: TypeId) -> Option<&EventInfo> {
        self.events.iter().find(|e| e.type_id() == id)
    }

    /// Finds every stored name claimed by unrelated types, every alias claimed by two
    /// events or equal to another's stored name, and every stream category claimed by two
    /// aggregates.
    ///
    /// Types sharing a stored name are fine when they are the versions of one event, linked
    /// by `#[event(upcast_from = …)]` into a single chain: exactly one of them (the current
    /// version) is not the `upcast_from` of another.
    pub fn check(&self) -> Result<(), CatalogError> {
        let mut conflicts = Vec::new();
        let mut by_name: BTreeMap<&'static str, Vec<&EventInfo>> = BTreeMap::new();
        for event in &self.events {
            by_name.entry(event.name).or_default().push(event);
        }
        for (name, types) in by_name {
            if types.len() < 2 {
                continue;
            }
            let older: HashSet<TypeId> = types
                .iter()
                .filter_map(|e| e.upcast_from.map(|t| (t.id)()))
                .collect();
            let heads = types
                .iter()
                .filter(|e| !older.contains(&e.type_id()))
                .count();
            if heads > 1 {
                conflicts.push(CatalogConflict::EventName {
                    name,
                    types: types.iter().map(|e| e.rust_type()).collect(),
                });
            }
        }
        // An alias is claimed by the stored name whose types declare it.
        let mut alias_claims: BTreeMap<&'static str, BTreeSet<&'static str>> = BTreeMap::new();
        for event in &self.events {
            for alias in event.aliases {
                alias_claims.entry(alias).or_default().insert(event.name);
            }
        }
        for (alias, names) in alias_claims {
            let stored: Vec<&EventInfo> = self.events_named(alias).collect();
            if names.len() > 1 || !stored.is_empty() {
                let mut types: Vec<&'static str> = names
                    .iter()
                    .filter_map(|name| self.current(name).map(EventInfo::rust_type))
                    .chain(stored.iter().map(|e| e.rust_type()))
                    .collect();
                types.dedup();
                conflicts.push(CatalogConflict::Alias { alias, types });
            }
        }
        let mut by_category: BTreeMap<&'static str, Vec<&'static str>> = BTreeMap::new();
        for aggregate in &self.aggregates {
            by_category
                .entry(aggregate.name)
                .or_default()
                .push(aggregate.rust_type());
        }
        for (name, types) in by_category {
            if types.len() > 1 {
                conflicts.push(CatalogConflict::AggregateName { name, types });
            }
        }
        if conflicts.is_empty() {
            Ok(())
        } else {
            Err(CatalogError { conflicts })
        }
    }
}

/// The catalog holds names claimed twice; see [`Catalog::check`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", display_conflicts(.conflicts))]
#[non_exhaustive]
pub struct CatalogError {
    /// Every conflict found, sorted by name.
    pub conflicts: Vec<CatalogConflict>,
}

fn display_conflicts(conflicts: &[CatalogConflict]) -> String {
    conflicts
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// One name claimed twice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogConflict {
    /// Unrelated event types are stored under one name: stored events of that name would be
    /// decoded as whichever type the reading aggregate knows.
    #[error(
        "the stored event name `{name}` is used by unrelated types {types:?}; give each its own #[event(name = \"…\")], or link the versions of one event with #[event(upcast_from = …)]"
    )]
    EventName {
        /// The stored name.
        name: &'static str,
        /// The Rust types that claim it.
        types: Vec<&'static str>,
    },
    /// An alias is declared by two events, or is the stored name of another event: its rows
    /// would be decoded as whichever the reading aggregate knows.
    #[error(
        "the alias `{alias}` is claimed by {types:?}; an alias is a former name of one event, used by no other: remove it from all but one #[event(aliases = […])]"
    )]
    Alias {
        /// The alias.
        alias: &'static str,
        /// The Rust types that claim it, as an alias or as their stored name.
        types: Vec<&'static str>,
    },
    /// Two aggregates write to one stream category, so their streams would mix.
    #[error(
        "the aggregate name `{name}` is used by {types:?}; give each its own #[aggregate(name = \"…\")]"
    )]
    AggregateName {
        /// The stream category.
        name: &'static str,
        /// The Rust types that claim it.
        types: Vec<&'static str>,
    },
}

/// The JSON Schema of `T` as the catalog records it: draft 2020-12, nested types under
/// `$defs`, without the `$schema` keyword (the lock names the dialect once).
pub(crate) fn schema_of<T: schemars::JsonSchema>() -> serde_json::Value {
    let schema = schemars::generate::SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<T>();
    let mut value = schema.to_value();
    if let Some(object) = value.as_object_mut() {
        object.remove("$schema");
    }
    value
}
