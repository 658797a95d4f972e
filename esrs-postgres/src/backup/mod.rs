//! Backups: export a store to a self-describing file, import it into an empty schema on any
//! cluster, and check that a backup restores to what it holds.
//!
//! A backup is JSON Lines compressed with zstd: a header, the checkpoints, every event in
//! the order of the global log (with every column: stream, version, name, schema version,
//! payload and metadata byte for byte, recorded time), the snapshots, the idempotency keys,
//! then a digest per stream and a manifest with the counts and a digest of the whole. Each
//! stream's digest is a SHA-256 chain over its events in version order, so a lost,
//! reordered or altered event shows in its stream's digest. The format is described line by
//! line in the crate's README.
//!
//! # Why not `pg_dump`
//!
//! The global log is ordered by the id of the transaction that wrote each event (`xid8`),
//! which only grows within one cluster. Restored by `pg_dump`/`pg_restore` into another
//! cluster, whose transaction counter is lower, the stored ids lie ahead of the new ones:
//! every event appended after the restore would sort *before* the restored events, and a
//! projection resuming from its restored checkpoint would never read it.
//! [`PgStore::migrate`](crate::PgStore::migrate) detects such a restore and refuses it with
//! [`Error::RestoredFromAnotherCluster`](crate::Error::RestoredFromAnotherCluster).
//! [`PgStore::import`](crate::PgStore::import) instead writes the events anew, in their global order, in one
//! transaction of the target cluster, and translates each checkpoint to the position of
//! the last event it covered there, so every projection resumes exactly where it was and
//! every later event sorts after the restored ones.
//!
//! ```no_run
//! # async fn run(source: esrs_postgres::PgStore, target: esrs_postgres::PgStore)
//! # -> Result<(), esrs_postgres::backup::BackupError> {
//! let file = tokio::fs::File::create("store.esrs.zst").await?;
//! let exported = source.export(file).await?;
//! let file = tokio::fs::File::open("store.esrs.zst").await?;
//! let imported = target.import(file).await?;
//! assert!(exported.differences(&imported).is_empty());
//! # Ok(()) }
//! ```
//!
//! Memory stays flat whatever the size of the store, but for one digest per stream (the
//! chain being built, some 100 bytes a stream).

mod check;
mod export;
mod format;
mod import;

use std::collections::BTreeMap;

use async_compression::tokio::bufread::ZstdDecoder;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader, Lines};

pub use format::{FORMAT, FORMAT_VERSION};

use check::Checker;
use format::Line;

/// What a backup holds, or a store holds: counts and digests, to compare one with another.
///
/// [`PgStore::export`](crate::PgStore::export) and [`PgStore::import`](crate::PgStore::import)
/// return it, [`verify_backup`] reads it from a file, [`PgStore::summary`](crate::PgStore::summary)
/// computes it for a live store; [`differences`](Self::differences) compares two.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackupSummary {
    /// Events.
    pub events: u64,
    /// Snapshots.
    pub snapshots: u64,
    /// Idempotency keys.
    pub idempotency_keys: u64,
    /// Each checkpointed projection and how many events of the log it covers (the events at
    /// or before its checkpoint): the same number before and after an import, though the
    /// positions differ.
    pub checkpoints: BTreeMap<String, u64>,
    /// Each stream's version and the digest of its chain of events.
    pub streams: BTreeMap<String, StreamDigest>,
    /// The digest of every stream's digest, in stream order (hexadecimal SHA-256).
    pub digest: String,
}

/// A stream's version and the SHA-256 chain digest of its events (hexadecimal).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamDigest {
    /// The stream's version: its number of events.
    pub version: i64,
    /// The digest of its chain.
    pub digest: String,
}

/// The most differences [`BackupSummary::differences`] lists one by one.
pub const MAX_LISTED_DIFFERENCES: usize = 20;

impl BackupSummary {
    /// How `other` differs from `self`, one sentence each (the streams beyond the first
    /// [`MAX_LISTED_DIFFERENCES`] counted, not listed); empty when they hold the same.
    pub fn differences(&self, other: &BackupSummary) -> Vec<String> {
        let mut out = Vec::new();
        for (what, a, b) in [
            ("events", self.events, other.events),
            ("snapshots", self.snapshots, other.snapshots),
            (
                "idempotency keys",
                self.idempotency_keys,
                other.idempotency_keys,
            ),
            (
                "streams",
                self.streams.len() as u64,
                other.streams.len() as u64,
            ),
        ] {
            if a != b {
                out.push(format!("{what}: {a} against {b}"));
            }
        }
        if self.checkpoints != other.checkpoints {
            out.push(format!(
                "checkpoints (events covered): {:?} against {:?}",
                self.checkpoints, other.checkpoints
            ));
        }
        let mut streams = 0;
        let mut differ = |line: String| {
            streams += 1;
            if streams <= MAX_LISTED_DIFFERENCES {
                out.push(line);
            }
        };
        for (stream, digest) in &self.streams {
            match other.streams.get(stream) {
                None => differ(format!("stream `{stream}`: missing from the second")),
                Some(theirs) if theirs.version != digest.version => differ(format!(
                    "stream `{stream}`: version {} against {}",
                    digest.version, theirs.version
                )),
                Some(theirs) if theirs.digest != digest.digest => {
                    differ(format!("stream `{stream}`: its events differ"))
                }
                Some(_) => {}
            }
        }
        for stream in other.streams.keys() {
            if !self.streams.contains_key(stream) {
                differ(format!("stream `{stream}`: missing from the first"));
            }
        }
        if streams > MAX_LISTED_DIFFERENCES {
            out.push(format!(
                "… {} more streams differ",
                streams - MAX_LISTED_DIFFERENCES
            ));
        }
        out
    }
}

/// An error of exporting, importing or reading a backup.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// The database failed.
    #[error("the backup's database work failed")]
    Database(#[source] crate::Error),
    /// Reading or writing the file failed.
    #[error("reading or writing the backup failed")]
    Io(#[from] std::io::Error),
    /// A line is not a backup line.
    #[error("line {line} of the backup is not a backup line")]
    Malformed {
        /// The line's number (the first is 1).
        line: u64,
        /// What the JSON parser found.
        #[source]
        source: serde_json::Error,
    },
    /// The file is not a backup of a format this program reads.
    #[error(
        "the file is a backup of format `{format}` version {version}; this program reads `{FORMAT}` version {FORMAT_VERSION}"
    )]
    UnsupportedFormat {
        /// The header's format.
        format: String,
        /// The header's version.
        version: u32,
    },
    /// A line stands where it does not belong (the sections come in a fixed order).
    #[error("line {line} of the backup holds {found}, which cannot come after {after}")]
    OutOfOrder {
        /// The line's number.
        line: u64,
        /// What it holds.
        found: &'static str,
        /// What came before it.
        after: &'static str,
    },
    /// The backup ends before its manifest: the file was cut short.
    #[error("the backup ends after {lines} lines, before its manifest: the file is incomplete")]
    Truncated {
        /// The lines read.
        lines: u64,
    },
    /// The backup does not hold what its digests and manifest say.
    #[error("the backup is corrupt at line {line}: {reason}")]
    Corrupt {
        /// The line where it shows.
        line: u64,
        /// What does not match.
        reason: String,
    },
    /// An import's target schema already holds events, snapshots, idempotency keys or
    /// checkpoints; an import goes into an empty schema only. Nothing was written.
    #[error("schema `{schema}` is not empty; import into a new schema")]
    NotEmpty {
        /// The schema.
        schema: String,
    },
}

impl From<crate::Error> for BackupError {
    fn from(error: crate::Error) -> Self {
        Self::Database(error)
    }
}

impl From<sqlx::Error> for BackupError {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(crate::Error::from_sqlx(error))
    }
}

/// A backup's lines, decompressed, parsed and checked one by one.
struct LineReader<R: AsyncRead + Unpin> {
    lines: Lines<BufReader<ZstdDecoder<BufReader<R>>>>,
    checker: Checker,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    fn new(input: R) -> Self {
        Self {
            lines: BufReader::new(ZstdDecoder::new(BufReader::new(input))).lines(),
            checker: Checker::new(),
        }
    }

    /// The next line, checked; `None` at the end of the file.
    async fn next(&mut self) -> Result<Option<Line>, BackupError> {
        let Some(text) = self.lines.next_line().await? else {
            return Ok(None);
        };
        let line: Line = serde_json::from_str(&text).map_err(|source| BackupError::Malformed {
            line: self.checker.line() + 1,
            source,
        })?;
        self.checker.observe(&line)?;
        Ok(Some(line))
    }

    /// What the backup held, once every line was read.
    fn finish(self) -> Result<BackupSummary, BackupError> {
        self.checker.finish()
    }
}

/// Reads a whole backup and checks it without a database: its format, the order of its
/// sections, each stream's chain of events against its digest, and the manifest's counts
/// and digest. Returns what it holds.
pub async fn verify_backup(
    input: impl AsyncRead + Unpin + Send,
) -> Result<BackupSummary, BackupError> {
    let mut reader = LineReader::new(input);
    while reader.next().await?.is_some() {}
    reader.finish()
}
