//! Reading a backup line by line: the order of its sections, the chain of each stream,
//! and the manifest's counts and digest.

use std::collections::{BTreeMap, HashMap};

use super::format::{Chain, FORMAT, FORMAT_VERSION, Line, Total, hex};
use super::{BackupError, BackupSummary, StreamDigest};

/// The sections of a backup, in the order they come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Section {
    Start,
    Header,
    Checkpoints,
    Events,
    Snapshots,
    IdempotencyKeys,
    Streams,
    Manifest,
}

impl Section {
    fn of(line: &Line) -> Self {
        match line {
            Line::Header { .. } => Self::Header,
            Line::Checkpoint { .. } => Self::Checkpoints,
            Line::Event { .. } => Self::Events,
            Line::Snapshot { .. } => Self::Snapshots,
            Line::IdempotencyKey { .. } => Self::IdempotencyKeys,
            Line::Stream { .. } => Self::Streams,
            Line::Manifest { .. } => Self::Manifest,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Start => "the start",
            Self::Header => "the header",
            Self::Checkpoints => "a checkpoint",
            Self::Events => "an event",
            Self::Snapshots => "a snapshot",
            Self::IdempotencyKeys => "an idempotency key",
            Self::Streams => "a stream's digest",
            Self::Manifest => "the manifest",
        }
    }
}

/// Follows a backup line by line and checks it: sections in order, one header of a known
/// format first, each stream's versions 1, 2, 3 … in the log, every stream's digest equal
/// to the chain of its events, and the manifest's counts and digest equal to what came.
#[derive(Debug)]
pub(crate) struct Checker {
    section: Section,
    line: u64,
    chains: HashMap<String, Chain>,
    checkpoints: BTreeMap<String, u64>,
    events: u64,
    snapshots: u64,
    idempotency_keys: u64,
    streams_seen: u64,
    last_stream: Option<String>,
    total: Total,
    summary: Option<BackupSummary>,
}

impl Checker {
    pub(crate) fn new() -> Self {
        Self {
            section: Section::Start,
            line: 0,
            chains: HashMap::new(),
            checkpoints: BTreeMap::new(),
            events: 0,
            snapshots: 0,
            idempotency_keys: 0,
            streams_seen: 0,
            last_stream: None,
            total: Total::default(),
            summary: None,
        }
    }

    /// The number of the line last observed (the first is 1).
    pub(crate) fn line(&self) -> u64 {
        self.line
    }

    /// Events observed so far.
    pub(crate) fn events(&self) -> u64 {
        self.events
    }

    fn corrupt(&self, reason: String) -> BackupError {
        BackupError::Corrupt {
            line: self.line,
            reason,
        }
    }

    /// Checks the next line.
    pub(crate) fn observe(&mut self, line: &Line) -> Result<(), BackupError> {
        self.line += 1;
        let section = Section::of(line);
        let repeatable = !matches!(section, Section::Header | Section::Manifest);
        if section < self.section
            || (section == self.section && !repeatable)
            || (self.section == Section::Start && section != Section::Header)
            || self.section == Section::Manifest
        {
            return Err(BackupError::OutOfOrder {
                line: self.line,
                found: section.name(),
                after: self.section.name(),
            });
        }
        self.section = section;
        match line {
            Line::Header {
                format,
                format_version,
                ..
            } => {
                if format != FORMAT || *format_version != FORMAT_VERSION {
                    return Err(BackupError::UnsupportedFormat {
                        format: format.clone(),
                        version: *format_version,
                    });
                }
            }
            Line::Checkpoint {
                projection, covers, ..
            } => {
                if self
                    .checkpoints
                    .insert(projection.clone(), *covers)
                    .is_some()
                {
                    return Err(self.corrupt(format!("projection `{projection}` comes twice")));
                }
            }
            Line::Event {
                id,
                stream,
                version,
                name,
                event_version,
                payload,
                metadata,
                recorded_at,
                ..
            } => {
                let chain = self
                    .chains
                    .get(stream.as_str())
                    .copied()
                    .unwrap_or_default();
                if *version != chain.version + 1 {
                    return Err(self.corrupt(format!(
                        "event {version} of stream `{stream}` follows version {}",
                        chain.version
                    )));
                }
                let next = chain.next(
                    *id,
                    *version,
                    name,
                    *event_version,
                    payload,
                    metadata.as_deref(),
                    *recorded_at,
                );
                match self.chains.get_mut(stream.as_str()) {
                    Some(slot) => *slot = next,
                    None => {
                        self.chains.insert(stream.clone(), next);
                    }
                }
                self.events += 1;
            }
            Line::Snapshot { .. } => self.snapshots += 1,
            Line::IdempotencyKey { .. } => self.idempotency_keys += 1,
            Line::Stream {
                stream,
                version,
                digest,
            } => {
                if self.last_stream.as_deref() >= Some(stream.as_str()) {
                    return Err(self.corrupt(format!(
                        "the digest of stream `{stream}` is out of order or repeated"
                    )));
                }
                let Some(chain) = self.chains.get(stream.as_str()) else {
                    return Err(self.corrupt(format!(
                        "a digest for stream `{stream}`, which has no events"
                    )));
                };
                if chain.version != *version || hex(&chain.digest) != *digest {
                    return Err(self.corrupt(format!(
                        "stream `{stream}`: its events (up to version {}) do not match its digest (version {version})",
                        chain.version
                    )));
                }
                self.total.stream(stream, chain);
                self.streams_seen += 1;
                self.last_stream = Some(stream.clone());
            }
            Line::Manifest {
                events,
                streams,
                snapshots,
                idempotency_keys,
                checkpoints,
                digest,
            } => {
                let counted = [
                    ("events", *events, self.events),
                    ("streams", *streams, self.chains.len() as u64),
                    ("stream digests", *streams, self.streams_seen),
                    ("snapshots", *snapshots, self.snapshots),
                    ("idempotency keys", *idempotency_keys, self.idempotency_keys),
                    ("checkpoints", *checkpoints, self.checkpoints.len() as u64),
                ];
                for (what, stated, found) in counted {
                    if stated != found {
                        return Err(self.corrupt(format!(
                            "the manifest counts {stated} {what}, the backup holds {found}"
                        )));
                    }
                }
                if let Some((projection, covers)) = self
                    .checkpoints
                    .iter()
                    .find(|(_, covers)| **covers > self.events)
                {
                    return Err(self.corrupt(format!(
                        "projection `{projection}` covers {covers} events, the backup holds {}",
                        self.events
                    )));
                }
                let total = std::mem::take(&mut self.total).finish();
                if total != *digest {
                    return Err(self.corrupt("the manifest's digest does not match".to_owned()));
                }
                self.summary = Some(BackupSummary {
                    events: self.events,
                    snapshots: self.snapshots,
                    idempotency_keys: self.idempotency_keys,
                    checkpoints: std::mem::take(&mut self.checkpoints),
                    streams: self
                        .chains
                        .drain()
                        .map(|(stream, chain)| {
                            (
                                stream,
                                StreamDigest {
                                    version: chain.version,
                                    digest: hex(&chain.digest),
                                },
                            )
                        })
                        .collect(),
                    digest: total,
                });
            }
        }
        Ok(())
    }

    /// The last lines of a backup whose other lines were observed: each stream's digest,
    /// in stream order, then the manifest.
    pub(crate) fn closing_lines(&self) -> Vec<Line> {
        let mut streams: Vec<(&String, &Chain)> = self.chains.iter().collect();
        streams.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut total = Total::default();
        let mut lines: Vec<Line> = streams
            .iter()
            .map(|(stream, chain)| {
                total.stream(stream, chain);
                Line::Stream {
                    stream: (*stream).clone(),
                    version: chain.version,
                    digest: hex(&chain.digest),
                }
            })
            .collect();
        lines.push(Line::Manifest {
            events: self.events,
            streams: self.chains.len() as u64,
            snapshots: self.snapshots,
            idempotency_keys: self.idempotency_keys,
            checkpoints: self.checkpoints.len() as u64,
            digest: total.finish(),
        });
        lines
    }

    /// What the backup holds, once its manifest was observed; a backup that ends before
    /// is [`BackupError::Truncated`].
    pub(crate) fn finish(self) -> Result<BackupSummary, BackupError> {
        self.summary
            .ok_or(BackupError::Truncated { lines: self.line })
    }
}
