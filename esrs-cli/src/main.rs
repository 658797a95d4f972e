//! `esrs`: inspect an esrs event store on PostgreSQL, follow its global log and its
//! projections, back it up, restore it and verify a backup, and feed it from an existing
//! system (an import of a table, then the capture of its changes).
//!
//! ```text
//! esrs --database-url postgres://postgres@127.0.0.1:5432/test streams --prefix cart-
//! esrs show cart-42
//! esrs export --to store.esrs.zst
//! esrs --schema restored import store.esrs.zst
//! esrs verify store.esrs.zst
//! esrs import-table invoices.mapping.json
//! esrs capture apply invoices.mapping.json
//! esrs capture run invoices.mapping.json --once
//! ```
//!
//! Every command takes `--database-url` (or `DATABASE_URL`) and `--schema` (default
//! `esrs`); `--json` prints machine-readable output (one JSON document, or one JSON object
//! per line for `show` and `tail`). Exit codes: 0 success, 1 failure, 2 wrong usage, 3 a
//! verification that found differences.

mod commands;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use esrs_core::error::ErrorChain;

/// The exit code of a verification that found differences.
const EXIT_DIFFERENCES: u8 = 3;

/// Inspect, follow, back up and restore an esrs event store on PostgreSQL, and feed it from
/// the tables of an existing system.
#[derive(Debug, Parser)]
#[command(name = "esrs", version, propagate_version = true)]
#[command(
    after_help = "Exit codes: 0 success, 1 failure, 2 wrong usage, 3 differences found by `verify`."
)]
struct Cli {
    /// The PostgreSQL database of the store.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    database_url: Option<String>,
    /// The store's schema.
    #[arg(long, global = true, default_value = esrs_postgres::DEFAULT_SCHEMA)]
    schema: String,
    /// Print JSON instead of tables (one object per line for `show` and `tail`).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List streams with their version, event count and last event time.
    Streams {
        /// Only the streams whose id starts with this.
        #[arg(long, default_value = "")]
        prefix: String,
        /// At most this many streams.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Show a stream's events with their metadata and pretty-printed payloads.
    Show {
        /// The stream id.
        stream: String,
        /// Only the events up to this version: the stream as it was then.
        #[arg(long, value_name = "VERSION")]
        at: Option<u64>,
    },
    /// Follow the global log live, one line per event, as a projection reads it (a late
    /// commit is never skipped).
    Tail {
        /// Start after this position (`TRANSACTION:SEQUENCE`, or `start` for the whole
        /// log); by default, after the last event readable now.
        #[arg(long, value_name = "POSITION")]
        from: Option<String>,
        /// Stop after this many events.
        #[arg(long)]
        limit: Option<u64>,
    },
    /// List checkpointed projections with their position, lag and lock; reset one.
    Projections {
        #[command(subcommand)]
        action: Option<ProjectionAction>,
    },
    /// Show the store's counts, sizes on disk, and the oldest open transaction holding
    /// back readers of the global log.
    Stats,
    /// Write a backup of the store: events, snapshots, idempotency keys and checkpoints,
    /// with a digest per stream, as zstd-compressed JSON Lines.
    Export {
        /// The backup file to write.
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
    },
    /// Import a backup into the store's schema, which must be empty (on any cluster).
    Import {
        /// The backup file.
        file: PathBuf,
    },
    /// Import the rows of an existing table as events, with their original times, from a
    /// JSON mapping file (see `esrs_postgres::TableMapping`); a second run imports only the
    /// rows added since. With a `capture` section, run it once, after `esrs capture apply`.
    ImportTable {
        /// The mapping file.
        mapping: PathBuf,
    },
    /// Record an existing table's changes with a trigger and relay them into the store as
    /// events, in order, exactly once (`apply`, then `import-table`, then `run`).
    Capture {
        #[command(subcommand)]
        action: CaptureAction,
    },
    /// The restore test: check a backup, import it into a scratch schema (or compare it
    /// with a live store) and compare counts and digests. Run it every quarter from cron.
    Verify {
        /// The backup file.
        file: PathBuf,
        /// Compare with the live store at this database (and `--schema`) instead of
        /// importing into a scratch schema of `--database-url`.
        #[arg(long, value_name = "DATABASE_URL")]
        against: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ProjectionAction {
    /// Remove a projection's checkpoint, so that its next run rebuilds it from the start
    /// (refused while a runner holds it).
    Reset {
        /// The projection's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum CaptureAction {
    /// Print the SQL that captures the mapping's table: the capture table, the trigger
    /// function and the trigger (needs no database).
    Sql {
        /// The mapping file (a table mapping with a `capture` section).
        mapping: PathBuf,
    },
    /// Check the mapping against the table and apply the capture's SQL in one transaction
    /// (safe to repeat). Apply it before `import-table`.
    Apply {
        /// The mapping file.
        mapping: PathBuf,
    },
    /// Append the captured changes as events, in the order they were made, exactly once,
    /// until interrupted (Ctrl-C or SIGTERM; the batch under way completes), or with
    /// `--once` only what is captured now.
    Run {
        /// The mapping file.
        mapping: PathBuf,
        /// Relay what is captured now, then exit.
        #[arg(long)]
        once: bool,
        /// Captured rows appended per transaction.
        #[arg(long, value_name = "ROWS", default_value_t = esrs_postgres::capture::DEFAULT_BATCH)]
        batch: usize,
    },
}

/// How a command ended, when it did not fail.
pub(crate) enum Outcome {
    /// Done.
    Done,
    /// A verification found differences.
    Differences,
}

/// A command's failure, shown with its causes.
pub(crate) type Failure = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match commands::run(cli).await {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Differences) => ExitCode::from(EXIT_DIFFERENCES),
        Err(error) => {
            eprintln!("error: {}", ErrorChain::new(&*error));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn the_interface_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
