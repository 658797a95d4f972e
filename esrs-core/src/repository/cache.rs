//! The in-process aggregate cache behind [`Repository::with_cache`].

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::aggregate::Aggregate;
use crate::store::EventStore;
use crate::stream::StreamId;

use super::{Loaded, Repository};

impl<A: Aggregate, S: EventStore> Repository<A, S> {
    pub(super) fn cache_put(&self, stream: &StreamId, loaded: &Loaded<A>) {
        if let Some(cache) = &self.cache {
            cache.put(stream, loaded);
        }
    }
}

/// The counters of a repository's aggregate cache, from [`Repository::cache_stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct CacheStats {
    /// The most aggregates the cache holds.
    pub capacity: usize,
    /// The aggregates it holds now.
    pub len: usize,
    /// Commands that found their aggregate in the cache and skipped the load.
    pub hits: u64,
    /// Commands that loaded their aggregate from the store.
    pub misses: u64,
    /// Cached states found stale by the store's version check, then reloaded.
    pub stale: u64,
    /// Aggregates evicted to make room for others.
    pub evictions: u64,
}

/// The bounded, least-recently-used map of aggregate states behind
/// [`Repository::with_cache`].
///
/// A command takes its aggregate's entry out while it runs and puts it back after a
/// successful append, so two commands of one process never decide on the same copy.
pub(super) struct StateCache<A> {
    capacity: usize,
    clone: fn(&A) -> A,
    entries: Mutex<CacheEntries<A>>,
    hits: AtomicU64,
    misses: AtomicU64,
    pub(super) stale: AtomicU64,
    evictions: AtomicU64,
}

struct CacheEntries<A> {
    by_stream: HashMap<StreamId, CacheEntry<A>>,
    /// Streams by last use, oldest first.
    by_use: BTreeMap<u64, StreamId>,
    tick: u64,
}

struct CacheEntry<A> {
    loaded: Loaded<A>,
    used: u64,
}

impl<A> StateCache<A> {
    pub(super) fn new(capacity: usize, clone: fn(&A) -> A) -> Self {
        Self {
            capacity,
            clone,
            entries: Mutex::new(CacheEntries {
                by_stream: HashMap::with_capacity(capacity.min(1 << 16)),
                by_use: BTreeMap::new(),
                tick: 0,
            }),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, CacheEntries<A>> {
        // Every mutation below leaves the maps consistent before it can panic.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the entry of `stream` out of the cache.
    pub(super) fn take(&self, stream: &StreamId) -> Option<Loaded<A>> {
        let taken = {
            let mut entries = self.lock();
            let entry = entries.by_stream.remove(stream);
            if let Some(entry) = &entry {
                entries.by_use.remove(&entry.used);
            }
            entry
        };
        match taken {
            Some(entry) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(entry.loaded)
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Puts a copy of `loaded` in the cache, unless it already holds a state of `stream` at
    /// the same or a later version.
    pub(super) fn put(&self, stream: &StreamId, loaded: &Loaded<A>) {
        let mut entries = self.lock();
        let entries = &mut *entries;
        if let Some(existing) = entries.by_stream.get_mut(stream) {
            if existing.loaded.version >= loaded.version {
                return;
            }
            existing.loaded = Loaded {
                state: (self.clone)(&loaded.state),
                version: loaded.version,
            };
            entries.by_use.remove(&existing.used);
            entries.tick += 1;
            existing.used = entries.tick;
            entries.by_use.insert(entries.tick, stream.clone());
            return;
        }
        if entries.by_stream.len() >= self.capacity {
            if let Some((_, oldest)) = entries.by_use.pop_first() {
                entries.by_stream.remove(&oldest);
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
        entries.tick += 1;
        let used = entries.tick;
        entries.by_use.insert(used, stream.clone());
        entries.by_stream.insert(
            stream.clone(),
            CacheEntry {
                loaded: Loaded {
                    state: (self.clone)(&loaded.state),
                    version: loaded.version,
                },
                used,
            },
        );
    }

    pub(super) fn clear(&self) {
        let mut entries = self.lock();
        entries.by_stream.clear();
        entries.by_use.clear();
    }

    pub(super) fn stats(&self) -> CacheStats {
        CacheStats {
            capacity: self.capacity,
            len: self.lock().by_stream.len(),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            stale: self.stale.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }
}
