//! Filtered reads of the global log: the events of some stored names, or of one shard of the
//! streams, with the position the reader got through although it was given no event.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use md5::{Digest, Md5};

use crate::envelope::RecordedEvent;
use crate::error::Result;
use crate::position::Position;
use crate::stream::StreamId;

use super::event_store::EventStream;

/// A stream of [`LogEntry`]s, read lazily from the store by
/// [`EventStore::read_log`](crate::EventStore::read_log).
pub type LogStream<'a> = Pin<Box<dyn Stream<Item = Result<LogEntry>> + Send + 'a>>;

/// An item of a filtered read of the global log.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum LogEntry {
    /// An event the filter matches, in [`Position`] order.
    Event(RecordedEvent),
    /// Every event the filter matches at or before this position has been given: the reader
    /// got through the log up to here, although the events since the last one given were
    /// skipped. A reader's checkpoint may move here, so that a reader whose events are rare
    /// does not read the skipped part of the log again after a restart.
    Through(Position),
}

impl LogEntry {
    /// The position the reader got through with this entry: the event's own, or the one
    /// [`Through`](Self::Through) names.
    pub fn position(&self) -> Position {
        match self {
            Self::Event(event) => event.position,
            Self::Through(position) => *position,
        }
    }
}

/// Which events of the global log a reader wants: every event, the events of some stored
/// names, the events of one [`Shard`] of the streams, or the events of some names in one
/// shard.
///
/// A store filters where it can do so cheaply (PostgreSQL filters in SQL, with an index on
/// the names, so that a reader of rare events does not read the other rows); the default
/// [`EventStore::read_log`](crate::EventStore::read_log) filters the events of
/// [`read_all`](crate::EventStore::read_all).
///
/// ```
/// use esrs_core::StreamId;
/// use esrs_core::store::{LogFilter, Shard};
///
/// let filter = LogFilter::names(["Deposited", "Withdrawn"]).in_shard(Shard::new(0, 1)?);
/// assert!(filter.matches("Deposited", &StreamId::new("account-1")?));
/// assert!(!filter.matches("Opened", &StreamId::new("account-1")?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    names: Option<Arc<[String]>>,
    shard: Option<Shard>,
}

impl LogFilter {
    /// Every event of the log.
    pub fn all() -> Self {
        Self::default()
    }

    /// The events stored under one of `names` (an empty list matches no event). Duplicates
    /// are dropped and the names sorted, so that two filters of the same names are equal.
    pub fn names<I, N>(names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: Into<String>,
    {
        let mut names: Vec<String> = names.into_iter().map(Into::into).collect();
        names.sort_unstable();
        names.dedup();
        Self {
            names: Some(names.into()),
            shard: None,
        }
    }

    /// The events of the filter that belong to the streams of `shard`.
    pub fn in_shard(mut self, shard: Shard) -> Self {
        self.shard = Some(shard);
        self
    }

    /// The stored names matched, sorted; `None` when every name is.
    pub fn name_list(&self) -> Option<&[String]> {
        self.names.as_deref()
    }

    /// The shard of the streams matched; `None` when every stream is.
    pub fn shard(&self) -> Option<Shard> {
        self.shard
    }

    /// Whether the filter matches every event of the log.
    pub fn is_all(&self) -> bool {
        self.names.is_none() && self.shard.is_none_or(|shard| shard.count == 1)
    }

    /// Whether an event stored under `name` in `stream` is matched.
    pub fn matches(&self, name: &str, stream: &StreamId) -> bool {
        self.matches_name(name) && self.shard.is_none_or(|shard| shard.contains(stream))
    }

    /// Whether events stored under `name` are matched, whatever their stream.
    pub fn matches_name(&self, name: &str) -> bool {
        self.names
            .as_deref()
            .is_none_or(|names| names.binary_search_by(|n| n.as_str().cmp(name)).is_ok())
    }
}

/// One of `count` disjoint parts of the streams of a store, so that `count` readers (the
/// shards of a sharded projection) share the log, each reading every event of its own
/// streams in order.
///
/// A stream's shard is the first 32 bits of the MD5 digest of its id's bytes, read
/// big-endian, modulo `count`: the same on every machine, in every version of esrs and in
/// SQL (`('x' || substr(md5(stream_id), 1, 8))::bit(32)::bigint % count`).
/// MD5 serves as a well-spread hash here, not for security.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    index: u32,
    count: u32,
}

/// A shard that does not exist: no shards, or an index not below the count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "shard {index} of {count} does not exist: shards are numbered 0 to count - 1, and count is at least 1"
)]
pub struct ShardError {
    /// The index asked for.
    pub index: u32,
    /// The number of shards asked for.
    pub count: u32,
}

impl Shard {
    /// Shard `index` of `count` (`index < count`).
    pub const fn new(index: u32, count: u32) -> std::result::Result<Self, ShardError> {
        if count == 0 || index >= count {
            return Err(ShardError { index, count });
        }
        Ok(Self { index, count })
    }

    /// The shard's number, from 0.
    pub const fn index(self) -> u32 {
        self.index
    }

    /// The number of shards the streams are split into.
    pub const fn count(self) -> u32 {
        self.count
    }

    /// The index of the shard of `count` that `stream` belongs to.
    ///
    /// # Panics
    ///
    /// If `count` is 0.
    pub fn of(stream: &StreamId, count: u32) -> u32 {
        assert!(count > 0, "a stream belongs to one of at least one shard");
        let digest = Md5::digest(stream.as_str().as_bytes());
        u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % count
    }

    /// Whether `stream` belongs to this shard.
    pub fn contains(self, stream: &StreamId) -> bool {
        self.count == 1 || Self::of(stream, self.count) == self.index
    }
}

impl std::fmt::Display for Shard {
    /// `index/count`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// After how many skipped events in a row a filtered read made in the client says how far it
/// got, so that a reader's checkpoint follows a long run of skipped events.
const THROUGH_EVERY: u64 = 1024;

/// The events of `events` that `filter` matches, with a [`LogEntry::Through`] after every
/// [`THROUGH_EVERY`] skipped events in a row and at the end when the last events were skipped.
pub(crate) fn filter_in_client(events: EventStream<'_>, filter: LogFilter) -> LogStream<'_> {
    Box::pin(ClientFilter {
        events,
        filter,
        skipped: None,
        done: false,
    })
}

struct ClientFilter<'a> {
    events: EventStream<'a>,
    filter: LogFilter,
    /// The last skipped event since the last entry given, and how many were skipped.
    skipped: Option<(Position, u64)>,
    done: bool,
}

impl Stream for ClientFilter<'_> {
    type Item = Result<LogEntry>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            match this.events.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(event))) => {
                    if this.filter.matches(&event.name, &event.stream) {
                        this.skipped = None;
                        return Poll::Ready(Some(Ok(LogEntry::Event(event))));
                    }
                    let count = this.skipped.map_or(0, |(_, count)| count) + 1;
                    if count >= THROUGH_EVERY {
                        this.skipped = None;
                        return Poll::Ready(Some(Ok(LogEntry::Through(event.position))));
                    }
                    this.skipped = Some((event.position, count));
                }
                Poll::Ready(Some(Err(error))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(error)));
                }
                Poll::Ready(None) => {
                    this.done = true;
                    return Poll::Ready(
                        this.skipped
                            .take()
                            .map(|(position, _)| Ok(LogEntry::Through(position))),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_belongs_to_the_shard_its_digest_names() {
        // MD5("account-1") begins with these four bytes.
        let stream = StreamId::new("account-1").unwrap();
        let digest = Md5::digest(b"account-1");
        let first = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
        for count in [1, 2, 3, 8, 1000] {
            assert_eq!(Shard::of(&stream, count), first % count);
        }
        // A known digest: MD5("") = d41d8cd9…, so the shards of an id hashing like it are
        // fixed by the rule, not by the implementation.
        assert_eq!(
            u32::from_be_bytes(Md5::digest(b"")[..4].try_into().unwrap()),
            0xd41d_8cd9
        );
    }

    #[test]
    fn shards_split_the_streams_without_overlap() {
        let count = 4;
        let mut sizes = [0u32; 4];
        for i in 0..4000 {
            let stream = StreamId::new(format!("s-{i}")).unwrap();
            let owners: Vec<u32> = (0..count)
                .filter(|&index| Shard::new(index, count).unwrap().contains(&stream))
                .collect();
            assert_eq!(owners.len(), 1, "{stream} belongs to exactly one shard");
            sizes[owners[0] as usize] += 1;
        }
        for size in sizes {
            assert!(
                (800..1200).contains(&size),
                "shards are well spread: {sizes:?}"
            );
        }
    }

    #[test]
    fn a_shard_that_does_not_exist_is_refused() {
        assert_eq!(Shard::new(4, 4), Err(ShardError { index: 4, count: 4 }));
        assert!(Shard::new(0, 0).is_err());
        assert_eq!(Shard::new(3, 4).unwrap().to_string(), "3/4");
    }

    #[test]
    fn a_name_filter_matches_its_names_only() {
        let stream = StreamId::new("s").unwrap();
        let filter = LogFilter::names(["B", "A", "B"]);
        assert_eq!(
            filter.name_list(),
            Some(&["A".to_owned(), "B".to_owned()][..])
        );
        assert!(filter.matches("A", &stream));
        assert!(!filter.matches("C", &stream));
        assert!(!LogFilter::names(Vec::<String>::new()).matches("A", &stream));
        assert!(LogFilter::all().is_all());
        assert!(!filter.is_all());
        assert!(
            LogFilter::all()
                .in_shard(Shard::new(0, 1).unwrap())
                .is_all()
        );
    }
}
