//! Where an event is in a store's global log.

use std::fmt;

/// The global sequence number of an event in a store, over all streams. Sequence numbers
/// are unique and grow with every append but may have gaps (an aborted append consumes
/// some), and they are not commit-ordered: see [`Position`].
pub type Sequence = u64;

/// The place of an event in a store's global log, and the checkpoint of a reader of it.
///
/// Positions are totally ordered, first by `transaction_id`, then by `sequence`, and the
/// global log is read in that order. `transaction_id` identifies the append that wrote the
/// event (for PostgreSQL the writing transaction's id, the `transaction_id` column of the
/// events table; for the in-memory store the append's number) and `sequence` is the event's
/// global sequence number.
/// A reader that keeps the last position it handled and asks for the events after it never
/// skips an event, even one whose append committed after a later-numbered one.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Position {
    /// The id of the transaction (the append) that wrote the event.
    pub transaction_id: u64,
    /// The event's global sequence number.
    pub sequence: Sequence,
}

impl Position {
    /// Before the first event: reading after it reads the whole log.
    pub const START: Self = Self {
        transaction_id: 0,
        sequence: 0,
    };

    /// A position.
    pub const fn new(transaction_id: u64, sequence: Sequence) -> Self {
        Self {
            transaction_id,
            sequence,
        }
    }
}

/// Prints `transaction_id:sequence`, the parts in the order positions sort by.
impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transaction_id, self.sequence)
    }
}
