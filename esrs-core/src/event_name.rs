//! [`EventName`]: an event's stored name as the store's reads give it, shared between the
//! events of a read instead of copied into each.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// The stored name of a recorded event ([`RecordedEvent::name`](crate::RecordedEvent::name),
/// [`FoldEvent::name`](crate::store::FoldEvent::name)): a string that clones without copying,
/// so that a read gives its many events of a few names without an allocation each.
///
/// It reads as a `&str` (it dereferences to one, and compares with `str`, `&str` and
/// `String`); [`as_str`](Self::as_str) and `to_string` give the text.
///
/// ```
/// use esrs_core::store::EventName;
///
/// let name = EventName::from("Deposited");
/// assert_eq!(name, "Deposited");
/// assert!(name.starts_with("Dep"));
/// let same = name.clone(); // no copy of the text
/// assert_eq!(same.as_str(), "Deposited");
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventName(Arc<str>);

impl EventName {
    /// The name's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for EventName {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for EventName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for EventName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for EventName {
    fn from(name: &str) -> Self {
        Self(Arc::from(name))
    }
}

impl From<String> for EventName {
    fn from(name: String) -> Self {
        Self(Arc::from(name))
    }
}

impl From<&String> for EventName {
    fn from(name: &String) -> Self {
        Self(Arc::from(name.as_str()))
    }
}

impl From<Arc<str>> for EventName {
    fn from(name: Arc<str>) -> Self {
        Self(name)
    }
}

impl From<EventName> for String {
    fn from(name: EventName) -> Self {
        name.0.as_ref().to_owned()
    }
}

impl PartialEq<str> for EventName {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for EventName {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<String> for EventName {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<EventName> for str {
    fn eq(&self, other: &EventName) -> bool {
        self == &*other.0
    }
}

impl PartialEq<EventName> for &str {
    fn eq(&self, other: &EventName) -> bool {
        *self == &*other.0
    }
}

impl PartialEq<EventName> for String {
    fn eq(&self, other: &EventName) -> bool {
        **self == *other.0
    }
}

impl serde::Serialize for EventName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for EventName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name: std::borrow::Cow<'de, str> = serde::Deserialize::deserialize(deserializer)?;
        Ok(Self::from(&*name))
    }
}
