//! The stream versions a store has just seen exist.
//!
//! An append that expects version `v` of a stream must not write `v + 1` when the stream is
//! short of `v` (that would leave a gap), so the append's `INSERT` checks that event `v`
//! exists, an index lookup of its own. A stream never loses an event (the events table
//! refuses `DELETE` and `TRUNCATE`), so once the store has read or written event `v` of a
//! stream, that check can only succeed: the typical command (load the stream, decide, append
//! expecting the loaded version) skips it. The store trusts only what it saw itself in the
//! last [`SEEN_FOR`], so even a schema dropped and created again under a running store
//! cannot make it skip a check that would fail.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use esrs_core::{StreamId, Version};

/// How long a seen version is trusted.
pub(crate) const SEEN_FOR: Duration = Duration::from_secs(1);

/// The most streams remembered; beyond it, expired entries are dropped, then all.
const CAPACITY: usize = 4096;

/// The highest version seen of each recently read or written stream.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    streams: Mutex<HashMap<StreamId, (Version, Instant)>>,
}

impl Seen {
    /// Records that event `version` of `stream` exists (read or written just now).
    pub(crate) fn record(&self, stream: &StreamId, version: Version) {
        if version == 0 {
            return;
        }
        let now = Instant::now();
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((seen, at)) = streams.get_mut(stream) {
            // An expired entry is replaced by what was seen now.
            if version >= *seen || now.duration_since(*at) >= SEEN_FOR {
                *seen = version;
                *at = now;
            }
            return;
        }
        if streams.len() >= CAPACITY {
            streams.retain(|_, (_, at)| now.duration_since(*at) < SEEN_FOR);
            if streams.len() >= CAPACITY {
                streams.clear();
            }
        }
        streams.insert(stream.clone(), (version, now));
    }

    /// Whether event `version` of `stream` was seen in the last [`SEEN_FOR`].
    pub(crate) fn exists(&self, stream: &StreamId, version: Version) -> bool {
        let streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        streams
            .get(stream)
            .is_some_and(|(seen, at)| *seen >= version && at.elapsed() < SEEN_FOR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seen_version_vouches_for_itself_and_older_ones_for_a_while() {
        let seen = Seen::default();
        let a = StreamId::new("a").unwrap();
        let b = StreamId::new("b").unwrap();
        assert!(!seen.exists(&a, 1));
        seen.record(&a, 5);
        assert!(seen.exists(&a, 5));
        assert!(seen.exists(&a, 1));
        assert!(!seen.exists(&a, 6), "a version not seen");
        assert!(!seen.exists(&b, 1), "another stream");
        seen.record(&a, 3);
        assert!(
            seen.exists(&a, 5),
            "an older read does not lower what was seen"
        );
        seen.record(&b, 0);
        assert!(!seen.exists(&b, 1), "version 0 is no event");
    }

    #[test]
    fn what_was_seen_expires_and_the_map_stays_bounded() {
        let seen = Seen::default();
        let a = StreamId::new("a").unwrap();
        seen.record(&a, 2);
        {
            let mut streams = seen.streams.lock().unwrap();
            let entry = streams.get_mut(&a).unwrap();
            entry.1 -= SEEN_FOR;
        }
        assert!(!seen.exists(&a, 2), "trusted for SEEN_FOR only");
        for n in 0..CAPACITY * 2 {
            seen.record(&StreamId::new(format!("s-{n}")).unwrap(), 1);
        }
        assert!(seen.streams.lock().unwrap().len() <= CAPACITY);
    }
}
