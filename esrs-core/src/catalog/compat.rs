//! The compatibility rules: what a change of the program does to the events a lock records.
//!
//! A version in the lock describes payloads that may be stored. The program must still read
//! every one of them, and write the current version so that readers of the lock's schema
//! read it: so an existing version's fields are never removed, retyped or made required, and
//! no required field is added to it; its route to the current version stays; no stored name
//! or alias goes away. New events, new versions, optional fields and aliases are compatible.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde_json::Value;

use super::CatalogConflict;
use super::lock::{Lock, LockedEvent};

/// A change of the program that would break stored events or their readers; its message
/// names the event, the version, the field and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BreakingChange {
    /// A field of a version in the lock is gone.
    #[error(
        "event `{name}` version {version}: the field `{field}` was removed, but stored events of version {version} have it and their readers expect it; put the field back (an `Option` if it may be absent), or write the new shape as a new version with an upcaster from version {version}"
    )]
    FieldRemoved {
        /// The stored name.
        name: String,
        /// The version.
        version: u32,
        /// The field, as a path from the payload (`address.city`, `lines[].sku`).
        field: String,
    },
    /// A field of a version in the lock has another type.
    #[error(
        "event `{name}` version {version}: {} changed type from {was} to {now}, but stored events of version {version} hold {was}; keep it as it was, and write the new type as a new version with an upcaster from version {version}",
        field_text(field)
    )]
    FieldTypeChanged {
        /// The stored name.
        name: String,
        /// The version.
        version: u32,
        /// The field, as a path from the payload; empty for the payload as a whole.
        field: String,
        /// The type in the lock.
        was: String,
        /// The type in the program.
        now: String,
    },
    /// A version in the lock has a new required field.
    #[error(
        "event `{name}` version {version}: the new field `{field}` is required, but stored events of version {version} do not have it; give it a default (`#[serde(default)]`, or make it an `Option`), or add it in a new version with an upcaster from version {version}"
    )]
    RequiredFieldAdded {
        /// The stored name.
        name: String,
        /// The version.
        version: u32,
        /// The field, as a path from the payload.
        field: String,
    },
    /// An optional field of a version in the lock is now required.
    #[error(
        "event `{name}` version {version}: the field `{field}` was optional and is now required, but stored events of version {version} may lack it; keep it optional (`#[serde(default)]`, or an `Option`), or require it from a new version on"
    )]
    FieldNowRequired {
        /// The stored name.
        name: String,
        /// The version.
        version: u32,
        /// The field, as a path from the payload.
        field: String,
    },
    /// A version in the lock is newer than the program's current version.
    #[error(
        "event `{name}`: version {version} is in the lock, but the program's current version is {current}, so stored events of version {version} would no longer load; bring version {version} back as the current type"
    )]
    VersionRemoved {
        /// The stored name.
        name: String,
        /// The version in the lock.
        version: u32,
        /// The program's current version.
        current: u32,
    },
    /// A version in the lock has no route to the program's current version.
    #[error(
        "event `{name}`: version {version} is in the lock, but the current version {current} has no route from it, so stored events of version {version} would no longer load; keep the version {version} type and link it with #[event(upcast_from = …)], or add #[event(upcast(from = {version}, with = …))]"
    )]
    NoRoute {
        /// The stored name.
        name: String,
        /// The version in the lock.
        version: u32,
        /// The program's current version.
        current: u32,
    },
    /// A stored name in the lock is neither an event's name nor an alias of one.
    #[error("{}", event_removed(name, rust_type, renamed_to.as_ref()))]
    EventRemoved {
        /// The stored name.
        name: String,
        /// Its Rust type in the lock.
        rust_type: String,
        /// When the name was the Rust type's name: the program's event that looks like it
        /// under a new type name, as `(stored name, Rust type)`.
        renamed_to: Option<(String, String)>,
    },
    /// An alias in the lock is gone.
    #[error(
        "event `{name}`: the alias `{alias}` is gone, so events stored under `{alias}` would no longer load; keep it in #[event(aliases = [\"{alias}\"])]"
    )]
    AliasRemoved {
        /// The stored name.
        name: String,
        /// The alias in the lock.
        alias: String,
    },
    /// An aggregate no longer handles an event its streams hold.
    #[error(
        "aggregate `{aggregate}` no longer has the event `{name}`, but its streams hold such events, which would no longer load; keep an #[apply] handler for it in the aggregate"
    )]
    EventLeftAggregate {
        /// The stream category.
        aggregate: String,
        /// The stored name.
        name: String,
    },
    /// A stream category in the lock has no aggregate any more.
    #[error(
        "the aggregate `{aggregate}` (`{rust_type}`) is no longer in the program, so its streams would no longer load; keep it, with #[aggregate(name = \"{aggregate}\")]"
    )]
    AggregateRemoved {
        /// The stream category.
        aggregate: String,
        /// Its Rust type in the lock.
        rust_type: String,
    },
    /// The program claims a stored name, alias or stream category twice.
    #[error(transparent)]
    Conflict(CatalogConflict),
}

fn field_text(field: &str) -> String {
    if field.is_empty() {
        "the payload".to_owned()
    } else {
        format!("the field `{field}`")
    }
}

fn event_removed(name: &str, rust_type: &str, renamed_to: Option<&(String, String)>) -> String {
    let mut text = format!(
        "the stored event `{name}` (`{rust_type}`) is no longer in the program, so its stored events would no longer load; keep its type, or, if it was renamed, list the old name in the new type's #[event(aliases = [\"{name}\"])]"
    );
    if let Some((new_name, new_type)) = renamed_to {
        text.push_str(&format!(
            "; its stored name was its Rust type's name, and `{new_type}` (stored as `{new_name}`) has its shape: if that is the renamed type, give it #[event(name = \"{name}\")] to keep storing it as before"
        ));
    }
    text
}

/// Compares a lock, as committed, with the program's.
pub(super) fn compare(locked: &Lock, program: &Lock) -> (Vec<BreakingChange>, Vec<String>) {
    let mut cx = Compare::default();
    let aliases: BTreeMap<&str, &str> = program
        .events
        .iter()
        .flat_map(|(name, e)| e.aliases.iter().map(move |a| (a.as_str(), name.as_str())))
        .collect();
    // Where rows stored under a name of the lock are decoded now.
    let resolve = |name: &str| -> Option<(&str, &LockedEvent)> {
        if let Some((name, event)) = program.events.get_key_value(name) {
            return Some((name.as_str(), event));
        }
        let target = aliases.get(name)?;
        program
            .events
            .get_key_value(*target)
            .map(|(n, e)| (n.as_str(), e))
    };

    for (name, event) in &locked.events {
        let Some((now, current)) = resolve(name) else {
            let renamed_to = (!event.explicit_name)
                .then(|| renamed(name, event, locked, program))
                .flatten();
            cx.breaking.push(BreakingChange::EventRemoved {
                name: name.clone(),
                rust_type: event.rust_type.clone(),
                renamed_to,
            });
            continue;
        };
        if now != name {
            cx.compatible.push(format!(
                "event `{name}` is now stored as `{now}`, with `{name}` as an alias"
            ));
        } else if current.rust_type != event.rust_type {
            cx.compatible.push(format!(
                "event `{name}` is now the Rust type `{}` (was `{}`)",
                current.rust_type, event.rust_type
            ));
        }
        if current.explicit_name != event.explicit_name {
            cx.compatible.push(format!(
                "event `{now}`: its stored name is now {}",
                if current.explicit_name {
                    "explicit"
                } else {
                    "its Rust type's name"
                }
            ));
        }
        for alias in &event.aliases {
            if alias != now && !current.aliases.contains(alias) {
                cx.breaking.push(BreakingChange::AliasRemoved {
                    name: name.clone(),
                    alias: alias.clone(),
                });
            }
        }
        let newest = current.versions.keys().copied().max().unwrap_or(0);
        for (&version, old) in &event.versions {
            let Some(new) = current.versions.get(&version) else {
                cx.breaking.push(if version > newest {
                    BreakingChange::VersionRemoved {
                        name: name.clone(),
                        version,
                        current: newest,
                    }
                } else {
                    BreakingChange::NoRoute {
                        name: name.clone(),
                        version,
                        current: newest,
                    }
                });
                continue;
            };
            if old.rust_type != new.rust_type {
                cx.compatible.push(match &new.rust_type {
                    Some(t) => format!("event `{now}` version {version}: now decoded as `{t}`"),
                    None => format!(
                        "event `{now}` version {version}: now decoded through a payload upcaster"
                    ),
                });
            }
            if old.upcast != new.upcast {
                cx.compatible.push(format!(
                    "event `{now}` version {version}: upcast route now {}",
                    if new.upcast.is_empty() {
                        "none (the current version)".to_owned()
                    } else {
                        new.upcast.join("; ")
                    }
                ));
            }
            match (&old.schema, &new.schema) {
                (Some(was), Some(now)) => cx.schema(name, version, was, now),
                (Some(_), None) => cx.compatible.push(format!(
                    "event `{name}` version {version} is read without a schema of its own; the lock keeps the one it had"
                )),
                _ => {}
            }
        }
        for version in current.versions.keys() {
            if !event.versions.contains_key(version) {
                cx.compatible
                    .push(format!("event `{now}`: new version {version}"));
            }
        }
        for alias in &current.aliases {
            if !event.aliases.contains(alias) && alias != name {
                cx.compatible
                    .push(format!("event `{now}`: new alias `{alias}`"));
            }
        }
    }
    for name in program.events.keys() {
        let known = locked.events.contains_key(name)
            || program.events[name]
                .aliases
                .iter()
                .any(|a| locked.events.contains_key(a));
        if !known {
            cx.compatible.push(format!("new event `{name}`"));
        }
    }

    for (category, aggregate) in &locked.aggregates {
        let Some(now) = program.aggregates.get(category) else {
            cx.breaking.push(BreakingChange::AggregateRemoved {
                aggregate: category.clone(),
                rust_type: aggregate.rust_type.clone(),
            });
            continue;
        };
        if now.rust_type != aggregate.rust_type {
            cx.compatible.push(format!(
                "aggregate `{category}` is now the Rust type `{}` (was `{}`)",
                now.rust_type, aggregate.rust_type
            ));
        }
        for name in &aggregate.events {
            let Some((current, _)) = resolve(name) else {
                // Reported once, as a removed event.
                continue;
            };
            if !now.events.iter().any(|e| e == current) {
                cx.breaking.push(BreakingChange::EventLeftAggregate {
                    aggregate: category.clone(),
                    name: name.clone(),
                });
            }
        }
        for name in &now.events {
            let had = aggregate.events.contains(name)
                || program
                    .events
                    .get(name)
                    .is_some_and(|e| e.aliases.iter().any(|a| aggregate.events.contains(a)));
            if !had {
                cx.compatible
                    .push(format!("aggregate `{category}`: new event `{name}`"));
            }
        }
    }
    for category in program.aggregates.keys() {
        if !locked.aggregates.contains_key(category) {
            cx.compatible.push(format!("new aggregate `{category}`"));
        }
    }
    (cx.breaking, cx.compatible)
}

/// The program's event that looks like `event` renamed: a new name, taken from its Rust
/// type's name too, with the same current schema (titles and descriptions aside).
fn renamed(
    name: &str,
    event: &LockedEvent,
    locked: &Lock,
    program: &Lock,
) -> Option<(String, String)> {
    let shape = |e: &LockedEvent| {
        e.versions
            .values()
            .next_back()
            .and_then(|v| v.schema.as_ref())
            .map(|s| normalize(s, s, &mut Vec::new()))
    };
    let old = shape(event)?;
    program
        .events
        .iter()
        .filter(|(n, e)| {
            n.as_str() != name && !e.explicit_name && !locked.events.contains_key(n.as_str())
        })
        .find(|(_, e)| shape(e).as_ref() == Some(&old))
        .map(|(n, e)| (n.clone(), e.rust_type.clone()))
}

#[derive(Default)]
struct Compare {
    breaking: Vec<BreakingChange>,
    compatible: Vec<String>,
}

/// Keywords that describe a schema without constraining it.
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "default",
    "examples",
    "$comment",
    "deprecated",
    "readOnly",
    "writeOnly",
    "$schema",
    "$defs",
    "definitions",
];

impl Compare {
    fn schema(&mut self, name: &str, version: u32, was: &Value, now: &Value) {
        let mut walk = Walk {
            name,
            version,
            roots: (was, now),
            seen: HashSet::new(),
            cx: self,
        };
        walk.compare("", was, now);
    }
}

/// One comparison of two schemas of a version, the lock's and the program's.
struct Walk<'a> {
    name: &'a str,
    version: u32,
    /// The root schemas, whose `$defs` the `$ref`s point into.
    roots: (&'a Value, &'a Value),
    /// The pairs of definitions already compared (recursive types).
    seen: HashSet<(String, String)>,
    cx: &'a mut Compare,
}

impl Walk<'_> {
    fn compare(&mut self, path: &str, was: &Value, now: &Value) {
        let refs = (reference(was), reference(now));
        if let (Some(a), Some(b)) = &refs {
            if !self.seen.insert((a.clone(), b.clone())) {
                return;
            }
        }
        let written = (was, now);
        let was = resolve(self.roots.0, was);
        let now = resolve(self.roots.1, now);
        if is_object(was) && is_object(now) {
            self.object(path, was, now);
            return;
        }
        if let (Some(a), Some(b)) = (was.get("items"), now.get("items")) {
            if rest(was, &["items"]) == rest(now, &["items"]) {
                self.compare(&format!("{path}[]"), a, b);
                return;
            }
        }
        for key in ["anyOf", "oneOf"] {
            if let (Some(Value::Array(a)), Some(Value::Array(b))) = (was.get(key), now.get(key)) {
                if a.len() == b.len() && rest(was, &[key]) == rest(now, &[key]) {
                    for (a, b) in a.iter().zip(b) {
                        self.compare(path, a, b);
                    }
                    return;
                }
            }
        }
        let (a, b) = (
            normalize(self.roots.0, was, &mut Vec::new()),
            normalize(self.roots.1, now, &mut Vec::new()),
        );
        if a != b {
            self.cx.breaking.push(BreakingChange::FieldTypeChanged {
                name: self.name.to_owned(),
                version: self.version,
                field: path.to_owned(),
                was: describe(self.roots.0, written.0),
                now: describe(self.roots.1, written.1),
            });
        }
    }

    fn object(&mut self, path: &str, was: &Value, now: &Value) {
        let empty = serde_json::Map::new();
        let properties = |s: &Value| s.get("properties").and_then(Value::as_object).cloned();
        let required = |s: &Value| -> BTreeSet<String> {
            s.get("required")
                .and_then(Value::as_array)
                .map(|r| {
                    r.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let (old_fields, new_fields) = (
            properties(was).unwrap_or_else(|| empty.clone()),
            properties(now).unwrap_or(empty),
        );
        let (old_required, new_required) = (required(was), required(now));
        let at = |field: &str| {
            if path.is_empty() {
                field.to_owned()
            } else {
                format!("{path}.{field}")
            }
        };
        for (field, old) in &old_fields {
            let Some(new) = new_fields.get(field) else {
                self.cx.breaking.push(BreakingChange::FieldRemoved {
                    name: self.name.to_owned(),
                    version: self.version,
                    field: at(field),
                });
                continue;
            };
            if !old_required.contains(field) && new_required.contains(field) {
                self.cx.breaking.push(BreakingChange::FieldNowRequired {
                    name: self.name.to_owned(),
                    version: self.version,
                    field: at(field),
                });
            }
            self.compare(&at(field), old, new);
        }
        for field in new_fields.keys() {
            if old_fields.contains_key(field) {
                continue;
            }
            if new_required.contains(field) {
                self.cx.breaking.push(BreakingChange::RequiredFieldAdded {
                    name: self.name.to_owned(),
                    version: self.version,
                    field: at(field),
                });
            } else {
                self.cx.compatible.push(format!(
                    "event `{}` version {}: new optional field `{}`",
                    self.name,
                    self.version,
                    at(field)
                ));
            }
        }
        let skip = ["properties", "required"];
        let (a, b) = (
            normalize(self.roots.0, &rest(was, &skip), &mut Vec::new()),
            normalize(self.roots.1, &rest(now, &skip), &mut Vec::new()),
        );
        if a != b {
            self.cx.breaking.push(BreakingChange::FieldTypeChanged {
                name: self.name.to_owned(),
                version: self.version,
                field: path.to_owned(),
                was: describe(self.roots.0, was),
                now: describe(self.roots.1, now),
            });
        }
    }
}

/// The target of a `$ref`, if the schema is one.
fn reference(schema: &Value) -> Option<String> {
    schema
        .get("$ref")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Follows `$ref`s into the root's `$defs` (or `definitions`), a bounded number of times.
fn resolve<'a>(root: &'a Value, mut schema: &'a Value) -> &'a Value {
    for _ in 0..32 {
        let Some(target) = schema.get("$ref").and_then(Value::as_str) else {
            break;
        };
        let Some(pointer) = target.strip_prefix('#') else {
            break;
        };
        match root.pointer(pointer) {
            Some(found) => schema = found,
            None => break,
        }
    }
    schema
}

/// Whether a schema describes a JSON object with named fields.
fn is_object(schema: &Value) -> bool {
    schema.get("properties").is_some() || schema.get("type") == Some(&Value::from("object"))
}

/// The schema without `keys` (and without annotations).
fn rest(schema: &Value, keys: &[&str]) -> Value {
    match schema {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !keys.contains(&k.as_str()) && !ANNOTATIONS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The schema with its `$ref`s inlined (a recursive one kept as a reference) and without
/// annotations: two schemas that accept the same payloads the same way are equal.
fn normalize(root: &Value, schema: &Value, stack: &mut Vec<String>) -> Value {
    if let Some(target) = reference(schema) {
        if stack.contains(&target) || stack.len() > 32 {
            return Value::from(format!("$ref {}", short_ref(&target)));
        }
        stack.push(target);
        let value = normalize(root, resolve(root, schema), stack);
        stack.pop();
        return value;
    }
    match schema {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !ANNOTATIONS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), normalize(root, v, stack)))
                .collect(),
        ),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| normalize(root, v, stack)).collect())
        }
        Value::Bool(true) => Value::Object(serde_json::Map::new()),
        other => other.clone(),
    }
}

fn short_ref(target: &str) -> &str {
    target.rsplit('/').next().unwrap_or(target)
}

/// A short description of the type a schema accepts, for messages.
fn describe(root: &Value, schema: &Value) -> String {
    if let Some(target) = reference(schema) {
        return format!("`{}`", short_ref(&target));
    }
    let schema = resolve(root, schema);
    if schema == &Value::Bool(true) || schema.as_object().is_some_and(|m| m.is_empty()) {
        return "any value".to_owned();
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        let values: Vec<String> = values.iter().map(Value::to_string).collect();
        return format!("one of {}", values.join(", "));
    }
    if let Some(value) = schema.get("const") {
        return value.to_string();
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(options) = schema.get(key).and_then(Value::as_array) {
            let options: Vec<String> = options.iter().map(|o| describe(root, o)).collect();
            return options.join(" or ");
        }
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if types.is_empty() {
        return normalize(root, schema, &mut Vec::new()).to_string();
    }
    let mut text = types.join(" or ");
    if let Some(format) = schema.get("format").and_then(Value::as_str) {
        text = format!("{text} ({format})");
    }
    if let Some(items) = schema.get("items") {
        text = format!("{text} of {}", describe(root, items));
    }
    text
}
