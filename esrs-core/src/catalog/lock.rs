//! The lock file: the catalog as committed JSON, and the check of the program against it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::compat::{self, BreakingChange};
use super::{Catalog, CatalogError, EventInfo};

/// The environment variable that lets [`verify_lock`] write the lock file: `1` writes
/// compatible changes (and creates a missing file), `force` writes breaking ones too.
pub const UPDATE_VAR: &str = "ESRS_UPDATE_CATALOG";

/// The JSON Schema dialect of every schema in a lock file.
const SCHEMA_DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

/// The layout version of the lock file this esrs writes and reads.
const FORMAT: u32 = 1;

/// The content of a lock file: every aggregate and every stored event name of the program,
/// with each version's JSON Schema, sorted so that the file is stable and a change shows as a
/// small diff.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Lock {
    /// The layout version of the file (1).
    pub format: u32,
    /// The JSON Schema dialect of the schemas.
    pub schema_dialect: String,
    /// The aggregates, by stream category.
    pub aggregates: BTreeMap<String, LockedAggregate>,
    /// The events, by stored name.
    pub events: BTreeMap<String, LockedEvent>,
}

/// One aggregate of a [`Lock`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LockedAggregate {
    /// The Rust type of its state.
    pub rust_type: String,
    /// The stored names of its events, sorted.
    pub events: Vec<String>,
}

/// One stored event name of a [`Lock`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LockedEvent {
    /// The Rust type of the current version.
    pub rust_type: String,
    /// Whether the stored name was written (`#[event(name = "…")]`) rather than taken from
    /// the Rust type's name.
    pub explicit_name: bool,
    /// Former stored names whose rows decode as this event, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Every version the program reads, ascending.
    pub versions: BTreeMap<u32, LockedVersion>,
}

/// One version of a [`LockedEvent`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LockedVersion {
    /// The Rust type that decodes payloads of this version, if one does: none for a version
    /// that a payload upcaster turns into a later one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rust_type: Option<String>,
    /// The route from this version to the current one, one step per line: `"1 -> 2:
    /// From<my_app::ItemRemovedV1>"` or `"2 -> 3: payload upcaster v2_to_v3"`. Empty for the
    /// current version.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upcast: Vec<String>,
    /// The JSON Schema of payloads of this version, when a Rust type with a schema decodes
    /// it (or did, when the lock was written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
}

impl Lock {
    /// The lock of a catalog, and the names it claims twice (which a lock cannot hold: it
    /// keeps the current type of each name and the first aggregate of each category).
    pub fn of(catalog: &Catalog) -> (Self, Option<CatalogError>) {
        let conflicts = catalog.check().err();
        let mut aggregates = BTreeMap::new();
        for aggregate in catalog.aggregates() {
            let mut events: Vec<String> =
                aggregate.events().iter().map(|e| (*e).to_owned()).collect();
            events.sort();
            aggregates
                .entry(aggregate.name().to_owned())
                .or_insert(LockedAggregate {
                    rust_type: aggregate.rust_type().to_owned(),
                    events,
                });
        }
        let mut events = BTreeMap::new();
        for info in catalog.events() {
            if events.contains_key(info.name()) {
                continue;
            }
            let Some(current) = catalog.current(info.name()) else {
                continue;
            };
            let mut aliases: Vec<String> =
                current.aliases().iter().map(|a| (*a).to_owned()).collect();
            aliases.sort();
            let versions = current
                .known_versions()
                .into_iter()
                .map(|v| (v, version_entry(catalog, current, v)))
                .collect();
            events.insert(
                info.name().to_owned(),
                LockedEvent {
                    rust_type: current.rust_type().to_owned(),
                    explicit_name: current.explicit_name(),
                    aliases,
                    versions,
                },
            );
        }
        let lock = Self {
            format: FORMAT,
            schema_dialect: SCHEMA_DIALECT.to_owned(),
            aggregates,
            events,
        };
        (lock, conflicts)
    }

    /// The lock of the running program ([`super::program`]).
    pub fn program() -> (Self, Option<CatalogError>) {
        Self::of(&super::program())
    }

    /// Reads a lock from its JSON text.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The lock as the file holds it: pretty-printed JSON with every object's keys sorted,
    /// ending with a newline.
    pub fn to_json(&self) -> String {
        let value = serde_json::to_value(self).expect("a lock is plain JSON");
        let mut text =
            serde_json::to_string_pretty(&sorted(value)).expect("a JSON value is printable");
        text.push('\n');
        text
    }

    /// Compares this lock, as committed, with `program`'s: the changes that would break
    /// stored events, and a line for each compatible change.
    pub fn compare(&self, program: &Lock) -> (Vec<BreakingChange>, Vec<String>) {
        compat::compare(self, program)
    }

    /// `program`, keeping the schemas this lock has for versions that the program now reads
    /// without one (a version whose Rust type was replaced by a payload upcaster): the file
    /// remembers the shape of what is stored.
    fn keep_history(&self, mut program: Lock) -> Lock {
        for (name, event) in &mut program.events {
            let locked = self.events.get(name).or_else(|| {
                // A rename: the old name's history is now this event's.
                event.aliases.iter().find_map(|a| self.events.get(a))
            });
            let Some(locked) = locked else { continue };
            for (v, version) in &mut event.versions {
                if version.schema.is_none() {
                    version.schema = locked.versions.get(v).and_then(|l| l.schema.clone());
                }
            }
        }
        program
    }
}

/// The lock entry of version `v` of the event whose current type is `current`.
fn version_entry(catalog: &Catalog, current: &EventInfo, v: u32) -> LockedVersion {
    let mut upcast = Vec::new();
    let decoder = route(catalog, current, v, &mut upcast, 0);
    LockedVersion {
        rust_type: decoder.map(|d| d.rust_type().to_owned()),
        upcast,
        schema: decoder.and_then(EventInfo::schema),
    }
}

/// Walks the route that `Event::decode` of `info` takes from stored version `v`, pushing one
/// line per step; returns the type that decodes the payload as stored, if one does.
fn route<'a>(
    catalog: &'a Catalog,
    info: &'a EventInfo,
    v: u32,
    steps: &mut Vec<String>,
    depth: usize,
) -> Option<&'a EventInfo> {
    if v == info.version() || depth > 64 {
        return (v == info.version()).then_some(info);
    }
    if let Some(&(from, to, with)) = info.payload_upcasters().iter().find(|u| u.0 == v) {
        steps.push(format!("{from} -> {to}: payload upcaster {with}"));
        route(catalog, info, to, steps, depth + 1);
        return None;
    }
    let previous = info
        .upcast_from
        .filter(|_| v < info.version())
        .and_then(|t| catalog.by_type_id((t.id)()))?;
    let decoder = route(catalog, previous, v, steps, depth + 1);
    steps.push(format!(
        "{} -> {}: From<{}>",
        previous.version(),
        info.version(),
        previous.rust_type()
    ));
    decoder
}

/// `value` with the keys of every object in sorted order, whatever the map type
/// `serde_json` was built with.
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let entries: BTreeMap<String, Value> =
                map.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            Value::Object(entries.into_iter().collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// What [`verify_lock`] found, when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LockStatus {
    /// The file is what the program would write.
    UpToDate,
    /// The program has compatible changes the file does not record yet (listed); run with
    /// `ESRS_UPDATE_CATALOG=1` to record them.
    Behind {
        /// One line per change.
        changes: Vec<String>,
    },
    /// The file was written (or created), as `ESRS_UPDATE_CATALOG` asked.
    Written {
        /// One line per change written.
        changes: Vec<String>,
    },
}

impl LockStatus {
    /// Whether the file was already what the program would write.
    pub fn is_up_to_date(&self) -> bool {
        matches!(self, Self::UpToDate)
    }
}

/// The lock check failed, or the lock file could not be read or written.
///
/// Its `Debug` is its `Display`, so that `verify_lock(…).unwrap()` in a test prints the
/// changes and their fixes as sentences.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// The program changed in a way that would break stored events or their readers.
    #[error("{}", display_breaking(path, changes))]
    Breaking {
        /// The lock file.
        path: PathBuf,
        /// Every breaking change, events first, then aggregates, then names claimed twice.
        changes: Vec<BreakingChange>,
    },
    /// There is no lock file yet.
    #[error(
        "there is no event catalog lock at {}: run `ESRS_UPDATE_CATALOG=1 cargo test` once to write it, and commit it",
        path.display()
    )]
    Missing {
        /// The expected lock file.
        path: PathBuf,
    },
    /// The lock file could not be read or written.
    #[error("cannot read or write the event catalog lock {}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// The lock file is not JSON of a lock's shape.
    #[error(
        "the event catalog lock {} does not parse: fix the merge, or restore it from version control",
        path.display()
    )]
    Parse {
        /// The lock file.
        path: PathBuf,
        /// What the JSON decoder said.
        #[source]
        source: serde_json::Error,
    },
    /// The lock file has a layout this version of esrs does not know.
    #[error(
        "the event catalog lock {} has format {found}; this esrs reads format {FORMAT}",
        path.display()
    )]
    Format {
        /// The lock file.
        path: PathBuf,
        /// Its `format`.
        found: u32,
    },
    /// `ESRS_UPDATE_CATALOG` has a value that means nothing.
    #[error(
        "ESRS_UPDATE_CATALOG={value:?}: use `1` to write compatible changes to the lock, `force` to write breaking ones too (of events never stored), or unset it to check"
    )]
    UpdateVar {
        /// The variable's value.
        value: String,
    },
}

impl fmt::Debug for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn display_breaking(path: &Path, changes: &[BreakingChange]) -> String {
    let mut text = format!(
        "the program's events break the event catalog lock {}:",
        path.display()
    );
    for change in changes {
        text.push_str("\n  - ");
        text.push_str(&change.to_string());
    }
    text.push_str(
        "\nIf none of these events was ever stored (a change still in development), accept them with ESRS_UPDATE_CATALOG=force.",
    );
    text
}

/// What `ESRS_UPDATE_CATALOG` asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Update {
    No,
    Compatible,
    Force,
}

fn update_mode() -> Result<Update, LockError> {
    let Some(value) = std::env::var_os(UPDATE_VAR) else {
        return Ok(Update::No);
    };
    match value.to_string_lossy().trim() {
        "" | "0" | "false" => Ok(Update::No),
        "1" | "true" => Ok(Update::Compatible),
        "force" => Ok(Update::Force),
        other => Err(LockError::UpdateVar {
            value: other.to_owned(),
        }),
    }
}

/// Reads the lock file at `path`; `None` when there is none.
fn read(path: &Path) -> Result<Option<(String, Lock)>, LockError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(LockError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    let format = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v.get("format").and_then(Value::as_u64));
    if let Some(found) = format.filter(|f| *f != u64::from(FORMAT)) {
        return Err(LockError::Format {
            path: path.to_owned(),
            found: u32::try_from(found).unwrap_or(u32::MAX),
        });
    }
    let lock = Lock::from_json(&text).map_err(|source| LockError::Parse {
        path: path.to_owned(),
        source,
    })?;
    Ok(Some((text, lock)))
}

fn write(path: &Path, lock: &Lock) -> Result<(), LockError> {
    std::fs::write(path, lock.to_json()).map_err(|source| LockError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Checks the program's events against the lock file at `path`: the CI gate of the event
/// catalog. Put it in a test of the crate that links every event (for an application, its
/// binary's or library's tests):
///
/// ```no_run
/// esrs_core::catalog::verify_lock(concat!(env!("CARGO_MANIFEST_DIR"), "/events.lock.json"))
///     .unwrap();
/// ```
///
/// It fails ([`LockError::Breaking`]) on every change that would break stored events or
/// other readers of them, each named with its event, version, field and fix (see
/// [`BreakingChange`]):
///
/// - a field removed from, or its type changed in, a version in the lock;
/// - a required field added to a version in the lock, or an optional one made required;
/// - a version in the lock removed, or no longer reachable from the current one;
/// - a stored name or alias in the lock gone (a name that is now another event's alias is a
///   rename, and passes); an aggregate gone, or no longer handling an event it had;
/// - a stored name, alias or stream category claimed twice in the program ([`super::check`]).
///
/// Compatible changes (a new event, a new version with its route, an optional field, an
/// alias, a renamed Rust type) pass; the file is left as it is ([`LockStatus::Behind`])
/// unless `ESRS_UPDATE_CATALOG=1` is set, which writes them ([`LockStatus::Written`]).
/// `ESRS_UPDATE_CATALOG=force` writes the program's catalog even over breaking changes: for
/// events that were never stored. A missing file is an error ([`LockError::Missing`]) unless
/// the variable is set, so that a deleted lock cannot pass CI.
pub fn verify_lock(path: impl AsRef<Path>) -> Result<LockStatus, LockError> {
    let path = path.as_ref();
    let update = update_mode()?;
    let (program, conflicts) = Lock::program();
    let conflicts: Vec<BreakingChange> = conflicts
        .map(|e| {
            e.conflicts
                .into_iter()
                .map(BreakingChange::Conflict)
                .collect()
        })
        .unwrap_or_default();
    let Some((text, locked)) = read(path)? else {
        if update == Update::No {
            return Err(LockError::Missing {
                path: path.to_owned(),
            });
        }
        if !conflicts.is_empty() && update != Update::Force {
            return Err(LockError::Breaking {
                path: path.to_owned(),
                changes: conflicts,
            });
        }
        write(path, &program)?;
        return Ok(LockStatus::Written {
            changes: vec![format!("created {}", path.display())],
        });
    };
    let (mut breaking, mut compatible) = locked.compare(&program);
    breaking.extend(conflicts);
    if !breaking.is_empty() && update != Update::Force {
        return Err(LockError::Breaking {
            path: path.to_owned(),
            changes: breaking,
        });
    }
    let program = locked.keep_history(program);
    let new_text = program.to_json();
    if new_text == text {
        return Ok(LockStatus::UpToDate);
    }
    compatible.extend(breaking.iter().map(|b| format!("forced: {b}")));
    if compatible.is_empty() {
        compatible.push("the file differs from what the program writes (layout or order)".into());
    }
    if update == Update::No {
        eprintln!(
            "esrs: the event catalog lock {} is behind the program by {} compatible change(s); run with {UPDATE_VAR}=1 to record them",
            path.display(),
            compatible.len()
        );
        return Ok(LockStatus::Behind {
            changes: compatible,
        });
    }
    write(path, &program)?;
    Ok(LockStatus::Written {
        changes: compatible,
    })
}

/// Writes the program's catalog to the lock file at `path`, whatever it held: the explicit
/// form of `ESRS_UPDATE_CATALOG=force` (schemas the file has for versions the program now
/// reads through a payload upcaster are kept). [`verify_lock`] is the check.
///
/// Fails when the program claims a stored name, alias or category twice, which a lock
/// cannot hold.
pub fn write_lock(path: impl AsRef<Path>) -> Result<(), LockError> {
    let path = path.as_ref();
    let (program, conflicts) = Lock::program();
    if let Some(error) = conflicts {
        return Err(LockError::Breaking {
            path: path.to_owned(),
            changes: error
                .conflicts
                .into_iter()
                .map(BreakingChange::Conflict)
                .collect(),
        });
    }
    let program = match read(path) {
        Ok(Some((_, locked))) => locked.keep_history(program),
        _ => program,
    };
    write(path, &program)
}
