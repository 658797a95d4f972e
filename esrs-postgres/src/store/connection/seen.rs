//! The stream versions a store has just seen exist.
//!
//! An append that expects version `v` of a stream must not write `v + 1` when the stream is
//! short of `v` (that would leave a gap), so the append's `INSERT` checks that event `v`
//! exists, an index lookup of its own. A stream never loses an event (the events table
//! refuses `DELETE` and `TRUNCATE`), so once the store has read or written event `v` of a
//! stream, that check can only succeed: the typical command (load the stream, decide, append
//! expecting the loaded version) skips it.
//!
//! Only a new events table (the schema dropped and created again under a running store) can
//! lack an event the store saw. So each seen version is recorded with the table it was seen
//! in (the table's OID, as the store knew it when the read or append started), and the
//! append skips the lookup only if its table is still that one (a comparison with a
//! constant the server resolves when it plans the statement, free at run time); in another
//! table it looks event `v` up after all. The store learns the table's OID from the rows its
//! one-event appends write (`RETURNING tableoid`). Whatever the timing, a version seen in
//! one table never vouches for another.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};

use esrs_core::{StreamId, Version};

/// The most streams remembered; beyond it, all are forgotten.
const CAPACITY: usize = 4096;

/// The events table a version was seen in: its OID, 0 when the store does not know it.
pub(crate) type Table = u32;

/// The highest version seen of each recently read or written stream, with its table.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    /// The OID of the events table, as last learned (0: not known).
    table: AtomicU32,
    streams: Mutex<HashMap<StreamId, (Version, Table)>>,
}

impl Seen {
    /// The table as known now: taken before a read or an append starts, and recorded with
    /// what it sees.
    pub(crate) fn table(&self) -> Table {
        self.table.load(Ordering::Acquire)
    }

    /// Learns the events table's OID from a row an append wrote.
    pub(crate) fn learn(&self, table: Table) {
        if self.table.load(Ordering::Acquire) != table
            && self.table.swap(table, Ordering::AcqRel) != table
        {
            // Versions seen in another table vouch for nothing in this one.
            self.lock().retain(|_, (_, seen_in)| *seen_in == table);
        }
    }

    /// Records that event `version` of `stream` exists in `table` (the table known when the
    /// read or write started).
    pub(crate) fn record(&self, stream: &StreamId, version: Version, table: Table) {
        if version == 0 || table == 0 {
            return;
        }
        let mut streams = self.lock();
        if let Some((seen, seen_in)) = streams.get_mut(stream) {
            if version >= *seen || *seen_in != table {
                *seen = version;
                *seen_in = table;
            }
            return;
        }
        if streams.len() >= CAPACITY {
            streams.clear();
        }
        streams.insert(stream.clone(), (version, table));
    }

    /// The table in which event `version` of `stream` was seen, if it was: the append that
    /// skips the lookup inserts only into that table.
    pub(crate) fn exists(&self, stream: &StreamId, version: Version) -> Option<Table> {
        self.lock()
            .get(stream)
            .filter(|(seen, _)| *seen >= version)
            .map(|(_, table)| *table)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<StreamId, (Version, Table)>> {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seen_version_vouches_for_itself_and_older_ones_in_its_table() {
        let seen = Seen::default();
        let a = StreamId::new("a").unwrap();
        let b = StreamId::new("b").unwrap();
        assert_eq!(seen.exists(&a, 1), None);
        seen.record(&a, 5, 7);
        assert_eq!(seen.exists(&a, 5), Some(7));
        assert_eq!(seen.exists(&a, 1), Some(7));
        assert_eq!(seen.exists(&a, 6), None, "a version not seen");
        assert_eq!(seen.exists(&b, 1), None, "another stream");
        seen.record(&a, 3, 7);
        assert_eq!(
            seen.exists(&a, 5),
            Some(7),
            "an older read does not lower what was seen"
        );
        seen.record(&b, 0, 7);
        assert_eq!(seen.exists(&b, 1), None, "version 0 is no event");
        seen.record(&b, 1, 0);
        assert_eq!(
            seen.exists(&b, 1),
            None,
            "nothing is seen in an unknown table"
        );
        seen.record(&a, 2, 8);
        assert_eq!(
            seen.exists(&a, 2),
            Some(8),
            "a new table replaces the old one"
        );
        assert_eq!(seen.exists(&a, 5), None);
    }

    #[test]
    fn a_new_table_forgets_the_old_ones_versions_and_the_map_stays_bounded() {
        let seen = Seen::default();
        let a = StreamId::new("a").unwrap();
        let b = StreamId::new("b").unwrap();
        seen.learn(7);
        seen.record(&a, 2, seen.table());
        seen.record(&b, 2, seen.table());
        seen.learn(8);
        assert_eq!(seen.exists(&a, 2), None);
        seen.record(&a, 2, seen.table());
        assert_eq!(seen.exists(&a, 2), Some(8));
        for n in 0..CAPACITY * 2 {
            seen.record(&StreamId::new(format!("s-{n}")).unwrap(), 1, 8);
        }
        assert!(seen.lock().len() <= CAPACITY);
    }
}
