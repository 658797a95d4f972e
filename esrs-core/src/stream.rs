//! Stream identifiers, stream versions and the expected version of an append.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

/// The identifier of one event stream: the history of one aggregate instance.
///
/// A stream id is validated when it is made: it is not empty, at most
/// [`StreamId::MAX_LEN`] bytes long and free of control characters. Any other text,
/// including quotes, backslashes and non-ASCII characters, is stored byte-exact.
///
/// Cloning is cheap: the text is shared.
///
/// ```
/// use esrs_core::StreamId;
///
/// let id = StreamId::new("order-42").unwrap();
/// assert_eq!(id.as_str(), "order-42");
/// assert!(StreamId::new("").is_err());
/// assert!(StreamId::new("a\nb").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(Arc<str>);

/// Why a text was refused as a [`StreamId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamIdError {
    /// The text was empty.
    #[error("a stream id cannot be empty")]
    Empty,
    /// The text was longer than [`StreamId::MAX_LEN`] bytes.
    #[error("a stream id is at most {max} bytes long, this one has {len}")]
    TooLong {
        /// The length of the refused text, in bytes.
        len: usize,
        /// The longest length accepted, in bytes.
        max: usize,
    },
    /// The text held a control character (such as a newline or NUL).
    #[error("a stream id cannot contain control characters; found {found:?} at byte {at}")]
    ControlCharacter {
        /// The refused character.
        found: char,
        /// Its byte offset in the text.
        at: usize,
    },
}

impl StreamId {
    /// The longest stream id accepted by [`StreamId::new`], in bytes.
    pub const MAX_LEN: usize = 256;

    /// Validates `id` and makes a stream id of it.
    pub fn new(id: impl AsRef<str>) -> Result<Self, StreamIdError> {
        let id = id.as_ref();
        Self::validate(id, StreamId::MAX_LEN)?;
        Ok(Self(Arc::from(id)))
    }

    fn validate(id: &str, max: usize) -> Result<(), StreamIdError> {
        if id.is_empty() {
            return Err(StreamIdError::Empty);
        }
        if id.len() > max {
            return Err(StreamIdError::TooLong { len: id.len(), max });
        }
        if let Some((at, found)) = id.char_indices().find(|(_, c)| c.is_control()) {
            return Err(StreamIdError::ControlCharacter { found, at });
        }
        Ok(())
    }

    /// The stream of aggregate `id` in `category`: `"{category}-{id}"`.
    ///
    /// [`Repository`](crate::Repository) stores each aggregate under this name, so that
    /// cart `42` and account `42` never share a stream. The result is checked like any
    /// other stream id: an `id` too long to leave room for the category is refused with
    /// [`StreamIdError::TooLong`] (its `len` is the length of the whole stream id).
    ///
    /// ```
    /// use esrs_core::StreamId;
    /// use esrs_core::error::StreamIdError;
    ///
    /// let id = StreamId::new("42").unwrap();
    /// assert_eq!(StreamId::in_category("cart", &id).unwrap().as_str(), "cart-42");
    ///
    /// let longest = StreamId::new("x".repeat(StreamId::MAX_LEN)).unwrap();
    /// assert!(matches!(
    ///     StreamId::in_category("cart", &longest),
    ///     Err(StreamIdError::TooLong { .. })
    /// ));
    /// ```
    pub fn in_category(category: &str, id: &StreamId) -> Result<Self, StreamIdError> {
        let mut s = String::with_capacity(category.len() + 1 + id.0.len());
        s.push_str(category);
        s.push('-');
        s.push_str(&id.0);
        Self::validate(&s, StreamId::MAX_LEN)?;
        Ok(Self(Arc::from(s)))
    }

    /// Makes a stream id of text read back from a store, which was validated when it was
    /// written.
    #[doc(hidden)]
    pub fn from_stored(id: impl Into<Arc<str>>) -> Self {
        Self(id.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for StreamId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for StreamId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for StreamId {
    type Err = StreamIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<&str> for StreamId {
    type Error = StreamIdError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl TryFrom<String> for StreamId {
    type Error = StreamIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl serde::Serialize for StreamId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for StreamId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(s).map_err(serde::de::Error::custom)
    }
}

/// The version of a stream: the number of events in it. The first event of a stream has
/// version 1; a stream that does not exist yet is at version 0.
pub type Version = u64;

/// What the writer believes the stream's version to be, checked atomically by the store on
/// append: the optimistic concurrency control of event sourcing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExpectedVersion {
    /// Append whatever the stream's version is.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must be at exactly this version (0 meaning "no stream").
    Exact(Version),
}

impl ExpectedVersion {
    /// Whether a stream currently at `current` satisfies this expectation.
    pub fn matches(self, current: Version) -> bool {
        match self {
            Self::Any => true,
            Self::NoStream => current == 0,
            Self::Exact(v) => v == current,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any version"),
            Self::NoStream => f.write_str("no stream"),
            Self::Exact(v) => write!(f, "version {v}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_id_validation() {
        assert_eq!(StreamId::new(""), Err(StreamIdError::Empty));
        let long = "x".repeat(StreamId::MAX_LEN + 1);
        assert_eq!(
            StreamId::new(&long),
            Err(StreamIdError::TooLong {
                len: StreamId::MAX_LEN + 1,
                max: StreamId::MAX_LEN
            })
        );
        assert!(StreamId::new("x".repeat(StreamId::MAX_LEN)).is_ok());
        assert_eq!(
            StreamId::new("ab\0"),
            Err(StreamIdError::ControlCharacter { found: '\0', at: 2 })
        );
        let odd = "it's a \"quoted\" \\ stream; DROP TABLE events; -- ünïcødé 🦀";
        assert_eq!(StreamId::new(odd).unwrap().as_str(), odd);
        assert_eq!(
            StreamIdError::Empty.to_string(),
            "a stream id cannot be empty"
        );
    }

    #[test]
    fn in_category_checks_the_length_of_the_whole_id() {
        let longest = StreamId::new("x".repeat(StreamId::MAX_LEN)).unwrap();
        assert_eq!(
            StreamId::in_category("cart", &longest),
            Err(StreamIdError::TooLong {
                len: StreamId::MAX_LEN + 5,
                max: StreamId::MAX_LEN
            })
        );
        let fits = StreamId::new("x".repeat(StreamId::MAX_LEN - 5)).unwrap();
        let stream = StreamId::in_category("cart", &fits).unwrap();
        assert_eq!(stream.as_str().len(), StreamId::MAX_LEN);
        // What the stores return for it deserialises again.
        let json = serde_json::to_string(&stream).unwrap();
        assert_eq!(serde_json::from_str::<StreamId>(&json).unwrap(), stream);
    }

    #[test]
    fn expected_version_matches() {
        assert!(ExpectedVersion::Any.matches(7));
        assert!(ExpectedVersion::NoStream.matches(0));
        assert!(!ExpectedVersion::NoStream.matches(1));
        assert!(ExpectedVersion::Exact(3).matches(3));
        assert!(!ExpectedVersion::Exact(3).matches(4));
    }
}
