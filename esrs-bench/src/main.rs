//! The esrs benchmark program.
//!
//! Runs the workloads of the design (W1–W4 and a batch append) through esrs and through
//! hand-written sqlx against an equivalent table, and through esrs on the in-memory store,
//! then prints one table with throughput, p50 and p99 latency, peak memory and the ratio
//! esrs / raw.
//!
//! Every run is a child process of this binary with its own fresh database, so that each
//! run's peak memory is its own and no run sees another's data. A child does its set-up
//! (W3's long stream, W4's log), resets its peak-memory mark, then measures.
//!
//! ```text
//! cargo run --release -p esrs-bench -- all
//! cargo run --release -p esrs-bench -- w1 w3 --database-url postgres://postgres@127.0.0.1:5432
//! ```

mod domain;
mod measure;
mod micro;
mod personal;
mod proxy;
mod raw;
mod shards;
mod workloads;

use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;

use esrs_core::error::ErrorChain;
use esrs_core::{InMemoryStore, Repository};
use esrs_postgres::{PgStore, PgStoreOptions};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor};

use crate::measure::Report;
use crate::workloads::{
    BATCH_EVENTS, BATCHES, BoxError, W1, W2, W3_LOADS, W3_LONG, W3_SHORT, W4_PER_STREAM,
    W4_STREAMS, W5_EVENTS, W5_HANDLED, W5_NAMES, W5_TAIL,
};

const USAGE: &str = "\
usage: esrs-bench [WORKLOAD...] [--database-url URL] [--repeat N] [--pg-page-size N]
                  [--pg-max-page-size N] [--recorder prometheus|none|both] [--pg-partitions N[,N...]] [--keep]

WORKLOAD is one or more of (or single runs by their id, such as w1:esrs or w2:mem-personal):
  all         every workload below (the default)
  w1          one client, 5,000 commands over 100 streams
  w2          8 concurrent clients, 20,000 commands over 1,000 streams
  w3          load of a 10,000-event stream (without and with snapshots) and of a 10-event one
  w4          replay of 100,000 events over 1,000 streams
  w5          a projection of 1 event name of 10 over 1,000,000 events: filtered in SQL,
              unfiltered (every row read, the others skipped) and raw SQL, and a restart over
              100,000 skipped events
  batch       append of 1,000 events in one call
  shards      W4's log into a read model that waits 50 µs per event, by 1, 2, 4 and 8
              shards (runs shards:1 … shards:8)
  micro       fold, decode with upcasting and encode, against hand-written code and serde
  personal    encode and decode of an event with one personal (encrypted) field, against
              the same event in clear
  roundtrips  round trips per operation, counted by a proxy in front of PostgreSQL

--database-url URL  the PostgreSQL server (default: $DATABASE_URL, else
                    postgres://postgres@127.0.0.1:5432); each run creates a fresh database
                    esrs_bench_<pid>_<n> on it and drops it afterwards
--repeat N          run every measured run N times, interleaved (default 3), and report
                    the run with the median throughput of each workload and implementation
--pg-page-size N    the PgStore option `page_size` (rows of a read's first query) for the
                    esrs runs; the default is PgStore's own
--pg-max-page-size N
                    the PgStore option `max_page_size` (rows a read's pages grow to); the
                    default is PgStore's own
--recorder R        `prometheus`: every run installs the Prometheus recorder of
                    metrics-exporter-prometheus (without its HTTP listener; its upkeep
                    runs every 5 s, as a scrape would), so that esrs's metrics are recorded;
                    `none` (the default): no recorder, esrs records nothing;
                    `both`: every run once with each, side by side in every pass (the
                    order alternating between passes), and a table of the cost: the
                    median over the passes of (throughput with / throughput without)
--pg-partitions L   the esrs runs on PostgreSQL on an events table of each number of hash
                    partitions in the comma-separated list (default 1: one plain table),
                    side by side in every pass; one table of results per number
--keep              keep the databases

esrs-bench child RUN [--passes K] [--database-url URL]
                    one run alone, in a fresh database it creates and drops; with
                    --passes K (W4's runs) the set-up is done once and the measured phase
                    K times, each inside the function `esrs_bench::measured_pass`, so that a
                    profiler can leave the set-up out:
                    valgrind --tool=callgrind --toggle-collect='esrs_bench::measured_pass*' \\
                        esrs-bench child w4:esrs --passes 3
esrs-bench child RUN+RUN[+RUN...] --passes K
                    W4's runs side by side in one process and one database: all set up
                    first, then K rounds, each running every run once (in an order that
                    rotates from round to round); prints each round's throughputs and the
                    ratio of each run to the first in the round, and the median ratio over
                    the rounds: the same-run comparison least disturbed by a shared
                    machine, whose load changes between runs seconds apart:
                        esrs-bench child w4:raw+w4:esrs+w4:esrs-read-all --passes 15
";

/// One measured run: a workload done by one implementation, in its own process.
#[derive(Debug, Clone, Copy)]
struct Run {
    id: &'static str,
    group: &'static str,
    postgres: bool,
}

const fn run(id: &'static str, group: &'static str, postgres: bool) -> Run {
    Run {
        id,
        group,
        postgres,
    }
}

const RUNS: &[Run] = &[
    run("w1:raw", "w1", true),
    run("w1:raw-pool", "w1", true),
    run("w1:esrs", "w1", true),
    run("w1:esrs-cache", "w1", true),
    run("w1:esrs-quiet", "w1", true),
    run("w1:esrs-personal", "w1", true),
    run("w1:mem", "w1", false),
    run("w1:mem-personal", "w1", false),
    run("w1:mem-cache", "w1", false),
    run("w2:raw", "w2", true),
    run("w2:raw-pool", "w2", true),
    run("w2:esrs", "w2", true),
    run("w2:esrs-cache", "w2", true),
    run("w2:esrs-quiet", "w2", true),
    run("w2:esrs-personal", "w2", true),
    run("w2:mem", "w2", false),
    run("w2:mem-personal", "w2", false),
    run("w2:mem-cache", "w2", false),
    run("w3-long:raw", "w3", true),
    run("w3-long:raw-pool", "w3", true),
    run("w3-long:esrs", "w3", true),
    run("w3-long:esrs-snap", "w3", true),
    run("w3-long:esrs-read", "w3", true),
    run("w3-long:mem", "w3", false),
    run("w3-long:mem-snap", "w3", false),
    run("w3-short:raw", "w3", true),
    run("w3-short:raw-pool", "w3", true),
    run("w3-short:esrs", "w3", true),
    run("w3-short:esrs-snap", "w3", true),
    run("w3-short:mem", "w3", false),
    run("w3-short:mem-snap", "w3", false),
    run("w4:raw", "w4", true),
    run("w4:raw-5col", "w4", true),
    run("w4:esrs", "w4", true),
    run("w4:esrs-read-all", "w4", true),
    run("w4:mem", "w4", false),
    run("w5:raw", "w5", true),
    run("w5:esrs-filtered", "w5", true),
    run("w5:esrs-unfiltered", "w5", true),
    run("shards:1", "shards", true),
    run("shards:2", "shards", true),
    run("shards:4", "shards", true),
    run("shards:8", "shards", true),
    run("batch:raw", "batch", true),
    run("batch:esrs", "batch", true),
    run("batch:mem", "batch", false),
];

const GROUPS: &[&str] = &[
    "w1",
    "w2",
    "w3",
    "w4",
    "w5",
    "batch",
    "shards",
    "micro",
    "personal",
    "roundtrips",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_database_replaces_or_adds_the_database() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/test?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
    }

    #[test]
    fn every_implementation_takes_every_place_in_its_workload() {
        let w1: Vec<usize> = (0..RUNS.len()).filter(|&i| RUNS[i].group == "w1").collect();
        let mut firsts = std::collections::BTreeSet::new();
        for rep in 0..w1.len() {
            let order = pass_order(RUNS, rep);
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(
                sorted,
                (0..RUNS.len()).collect::<Vec<_>>(),
                "each run once per pass"
            );
            let first_w1 = order.iter().find(|&&i| RUNS[i].group == "w1").unwrap();
            firsts.insert(*first_w1);
        }
        assert_eq!(firsts.into_iter().collect::<Vec<_>>(), w1);
    }

    #[test]
    fn arguments_select_groups() {
        let args = |a: &[&str]| parse(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(args(&[]).unwrap().groups.len(), GROUPS.len());
        assert_eq!(args(&["w1", "micro"]).unwrap().groups, ["w1", "micro"]);
        assert!(args(&["w9"]).is_err());
        let only = args(&["w1:esrs", "w2:mem"]).unwrap();
        assert!(only.groups.is_empty());
        assert_eq!(only.only, ["w1:esrs", "w2:mem"]);
        assert_eq!(
            args(&["--database-url", "postgres://x"])
                .unwrap()
                .database_url,
            "postgres://x"
        );
        assert!(args(&["--database-url"]).is_err());
        assert_eq!(args(&[]).unwrap().recorders, [Recorder::None]);
        assert_eq!(args(&[]).unwrap().partitions, [1]);
        assert_eq!(
            args(&["--pg-partitions", "1,8,32"]).unwrap().partitions,
            [1, 8, 32]
        );
        assert!(args(&["--pg-partitions", "0"]).is_err());
        assert!(args(&["--pg-partitions", "8,x"]).is_err());
        assert_eq!(
            args(&["w1", "--recorder", "prometheus"]).unwrap().recorders,
            [Recorder::Prometheus]
        );
        assert_eq!(
            args(&["w1", "--recorder", "both"]).unwrap().recorders,
            [Recorder::None, Recorder::Prometheus]
        );
        assert!(args(&["--recorder", "statsd"]).is_err());
        assert!(args(&["--recorder"]).is_err());
    }
}

#[derive(Debug)]
struct Options {
    database_url: String,
    keep: bool,
    repeat: usize,
    page_size: Option<u32>,
    max_page_size: Option<u32>,
    /// The recorders every run is made with, in the order of the first pass.
    recorders: Vec<Recorder>,
    /// The numbers of partitions of the events table every run is made with.
    partitions: Vec<u16>,
    groups: Vec<String>,
    /// Single runs named by their id (`w1:esrs`), besides the whole groups.
    only: Vec<String>,
}

/// How the parent passes `--pg-page-size` to its children.
const PAGE_SIZE_ENV: &str = "ESRS_BENCH_PG_PAGE_SIZE";
/// How the parent passes `--pg-max-page-size` to its children.
const MAX_PAGE_SIZE_ENV: &str = "ESRS_BENCH_PG_MAX_PAGE_SIZE";

/// How the parent passes the number of partitions of a run to its child.
const PARTITIONS_ENV: &str = "ESRS_BENCH_PG_PARTITIONS";

/// How the parent passes `--recorder` to its children.
const RECORDER_ENV: &str = "ESRS_BENCH_RECORDER";

/// The metrics recorder the runs install: `--recorder`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recorder {
    /// No recorder: the metrics facade's no-op.
    None,
    /// metrics-exporter-prometheus's recorder, without its HTTP listener.
    Prometheus,
}

impl Recorder {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "none" => Some(Self::None),
            "prometheus" => Some(Self::Prometheus),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Prometheus => "prometheus",
        }
    }

    /// Installs the recorder for this process, with a thread that runs its upkeep (drains
    /// the histograms into their summaries) every 5 s, as a scrape would.
    fn install(self) -> Result<(), BoxError> {
        if self == Self::Prometheus {
            let handle =
                metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
            esrs_core::metrics::describe();
            std::thread::spawn(move || {
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(5));
                    handle.run_upkeep();
                }
            });
        }
        Ok(())
    }
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        database_url: std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned()),
        keep: false,
        repeat: 3,
        page_size: None,
        max_page_size: None,
        recorders: vec![Recorder::None],
        partitions: vec![1],
        groups: Vec::new(),
        only: Vec::new(),
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--database-url" => {
                options.database_url = args
                    .next()
                    .ok_or("--database-url needs a value")?
                    .to_owned()
            }
            "--keep" => options.keep = true,
            "--pg-page-size" => {
                options.page_size = Some(
                    args.next()
                        .and_then(|n| n.parse().ok())
                        .filter(|n| *n > 0)
                        .ok_or("--pg-page-size needs a positive number")?,
                )
            }
            "--pg-max-page-size" => {
                options.max_page_size = Some(
                    args.next()
                        .and_then(|n| n.parse().ok())
                        .filter(|n| *n > 0)
                        .ok_or("--pg-max-page-size needs a positive number")?,
                )
            }
            "--recorder" => {
                options.recorders = match args.next().map(String::as_str) {
                    Some("both") => vec![Recorder::None, Recorder::Prometheus],
                    name => vec![
                        name.and_then(Recorder::parse)
                            .ok_or("--recorder needs `prometheus`, `none` or `both`")?,
                    ],
                }
            }
            "--pg-partitions" => {
                options.partitions = args
                    .next()
                    .and_then(|list| {
                        list.split(',')
                            .map(|n| {
                                n.trim()
                                    .parse::<u16>()
                                    .ok()
                                    .filter(|n| (1..=1024).contains(n))
                            })
                            .collect::<Option<Vec<_>>>()
                    })
                    .filter(|list| !list.is_empty())
                    .ok_or("--pg-partitions needs numbers from 1 to 1024, separated by commas")?
            }
            "--repeat" => {
                options.repeat = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| *n > 0)
                    .ok_or("--repeat needs a positive number")?
            }
            "-h" | "--help" => return Err(String::new()),
            "all" => options
                .groups
                .extend(GROUPS.iter().map(|g| (*g).to_owned())),
            g if GROUPS.contains(&g) => options.groups.push(g.to_owned()),
            r if RUNS.iter().any(|run| run.id == r) => options.only.push(r.to_owned()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if options.groups.is_empty() && options.only.is_empty() {
        options
            .groups
            .extend(GROUPS.iter().map(|g| (*g).to_owned()));
    }
    options.groups.dedup();
    Ok(options)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("child") {
        return child(&args[1..]);
    }
    let options = match parse(&args) {
        Ok(options) => options,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("esrs-bench: {message}\n");
            }
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match parent(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("esrs-bench: {}", ErrorChain::new(&*error));
            ExitCode::FAILURE
        }
    }
}

fn runtime(threads: usize) -> Result<tokio::runtime::Runtime, BoxError> {
    Ok(if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    })
}

/// The order of the runs in pass `rep`: workload by workload, each workload's runs rotated
/// by `rep`, so that over the passes every implementation runs first, second, … in its
/// workload (a run right after another PostgreSQL run finds the server busier than one
/// after the in-memory runs).
fn pass_order(runs: &[Run], rep: usize) -> Vec<usize> {
    let mut order = Vec::with_capacity(runs.len());
    let mut start = 0;
    while start < runs.len() {
        let group = runs[start].group;
        let len = runs[start..]
            .iter()
            .take_while(|r| r.group == group)
            .count();
        order.extend((0..len).map(|k| start + (k + rep) % len));
        start += len;
    }
    order
}

/// Runs the selected workloads, each in a child process, and prints the table.
fn parent(options: &Options) -> Result<(), BoxError> {
    let runs: Vec<Run> = RUNS
        .iter()
        .copied()
        .filter(|r| {
            options.groups.iter().any(|g| g == r.group) || options.only.iter().any(|o| o == r.id)
        })
        .collect();
    let admin = PgConnectOptions::from_str(&options.database_url)?.disable_statement_logging();
    let rt = runtime(1)?;
    let exe = std::env::current_exe()?;
    // Every run is made once per variant: each recorder on each number of partitions.
    let variants: Vec<(Recorder, u16)> = options
        .partitions
        .iter()
        .flat_map(|p| options.recorders.iter().map(move |r| (*r, *p)))
        .collect();
    let variants = &variants;
    // reports[run][variant][pass]
    let mut reports: Vec<Vec<Vec<Report>>> = vec![vec![Vec::new(); variants.len()]; runs.len()];
    let runs = &runs;
    let schedule = (0..options.repeat).flat_map(|rep| {
        pass_order(runs, rep).into_iter().flat_map(move |i| {
            (0..variants.len()).map(move |k| (rep, i, (k + rep) % variants.len()))
        })
    });
    for (n, (rep, index, which)) in schedule.enumerate() {
        let run = &runs[index];
        let (recorder, partitions) = variants[which];
        eprintln!(
            "[esrs-bench] {} (pass {}/{}, recorder {}, {} partitions) ...",
            run.id,
            rep + 1,
            options.repeat,
            recorder.name(),
            partitions
        );
        let database = format!("esrs_bench_{}_{n}", std::process::id());
        if run.postgres {
            rt.block_on(async {
                let mut conn = admin.connect().await?;
                conn.execute(format!("CREATE DATABASE {database}").as_str())
                    .await?;
                conn.close().await
            })?;
        }
        let output = std::process::Command::new(&exe)
            .args(["child", run.id, "--database-url", &options.database_url])
            .args(["--database", &database])
            .envs(options.page_size.map(|n| (PAGE_SIZE_ENV, n.to_string())))
            .envs(
                options
                    .max_page_size
                    .map(|n| (MAX_PAGE_SIZE_ENV, n.to_string())),
            )
            .env(RECORDER_ENV, recorder.name())
            .env(PARTITIONS_ENV, partitions.to_string())
            .stderr(std::process::Stdio::inherit())
            .output();
        if run.postgres && !options.keep {
            rt.block_on(async {
                let mut conn = admin.connect().await?;
                conn.execute(format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)").as_str())
                    .await?;
                conn.close().await
            })?;
        }
        let output = output?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix("RESULT "))
            .ok_or_else(|| format!("run {} failed ({})", run.id, output.status))?;
        reports[index][which].push(serde_json::from_str::<Report>(line)?);
    }
    if options.recorders.len() > 1 && options.partitions.len() == 1 {
        print_recorder_cost(&reports, &options.recorders);
    }
    for (k, (recorder, partitions)) in variants.iter().enumerate() {
        let reports: Vec<Report> = reports
            .iter()
            .filter_map(|by_variant| median(by_variant[k].clone()))
            .collect();
        if !reports.is_empty() {
            println!(
                "\nmetrics recorder: {}; events table: {}",
                recorder.name(),
                match partitions {
                    1 => "one table".to_owned(),
                    n => format!("{n} hash partitions"),
                }
            );
            print_table(&reports, options.repeat);
        }
    }
    if options.groups.iter().any(|g| g == "roundtrips") {
        rt.block_on(round_trips(&admin, options.keep))?;
    }
    if options.groups.iter().any(|g| g == "micro") {
        micro::print(&micro::run()?);
    }
    if options.groups.iter().any(|g| g == "personal") {
        personal::print(&personal::run()?);
    }
    Ok(())
}

/// The run with the median throughput of its passes, with the passes' range.
fn median(mut passes: Vec<Report>) -> Option<Report> {
    passes.sort_by(|a, b| a.throughput().total_cmp(&b.throughput()));
    let spread = match (passes.first(), passes.last()) {
        (Some(low), Some(high)) if passes.len() > 1 => Some((low.throughput(), high.throughput())),
        _ => None,
    };
    let mut median = passes.get(passes.len() / 2)?.clone();
    median.spread = spread;
    Some(median)
}

/// `--recorder both`: for every run, the ratio of its throughput with the second recorder to
/// that with the first, pass by pass (the two ran side by side), as median and range.
fn print_recorder_cost(reports: &[Vec<Vec<Report>>], recorders: &[Recorder]) {
    println!(
        "\nCost of the {} recorder: throughput with / without, per pass (side by side runs).",
        recorders[1].name()
    );
    println!(
        "{:<16} {:<22} {:>8} {:>15} {:>12} {:>12}",
        "workload", "implementation", "median", "range", "without/s", "with/s"
    );
    for by_recorder in reports {
        let (without, with) = (&by_recorder[0], &by_recorder[1]);
        let mut ratios: Vec<f64> = without
            .iter()
            .zip(with)
            .map(|(a, b)| b.throughput() / a.throughput())
            .collect();
        if ratios.is_empty() {
            continue;
        }
        ratios.sort_by(f64::total_cmp);
        let total = |passes: &[Report]| passes.iter().map(Report::throughput).sum::<f64>();
        println!(
            "{:<16} {:<22} {:>8.3} {:>15} {:>12.0} {:>12.0}",
            without[0].workload,
            without[0].implementation,
            ratios[ratios.len() / 2],
            format!("[{:.3}-{:.3}]", ratios[0], ratios[ratios.len() - 1]),
            total(without) / without.len() as f64,
            total(with) / with.len() as f64,
        );
    }
}

fn print_table(reports: &[Report], repeat: usize) {
    println!();
    if repeat > 1 {
        println!(
            "Median of {repeat} interleaved passes; [range] = lowest-highest throughput of the passes."
        );
    }
    println!(
        "{:<16} {:<22} {:>14} {:>19} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "workload",
        "implementation",
        "throughput",
        "range",
        "p50 ms",
        "p99 ms",
        "peak MiB",
        "conflicts",
        "vs raw"
    );
    let opt =
        |v: Option<f64>, precision: usize| v.map_or("-".to_owned(), |v| format!("{v:.precision$}"));
    for r in reports {
        let raw = reports
            .iter()
            .find(|o| o.workload == r.workload && o.implementation == "raw sqlx");
        let ratio = match raw {
            Some(raw) if raw.implementation != r.implementation => {
                format!("{:.2}", r.throughput() / raw.throughput())
            }
            _ => "-".to_owned(),
        };
        println!(
            "{:<16} {:<22} {:>8.0} {:<5} {:>19} {:>9} {:>9} {:>9} {:>9} {:>7}",
            r.workload,
            r.implementation,
            r.throughput(),
            format!("{}/s", r.unit),
            r.spread
                .map_or(String::new(), |(low, high)| format!("[{low:.0}-{high:.0}]")),
            opt(r.p50_ms, 3),
            opt(r.p99_ms, 3),
            opt(r.peak_mib, 1),
            r.conflicts.map_or("-".to_owned(), |c| c.to_string()),
            ratio,
        );
    }
    let notes: Vec<_> = reports
        .iter()
        .filter_map(|r| {
            r.note
                .as_ref()
                .map(|n| format!("  {} / {}: {n}", r.workload, r.implementation))
        })
        .collect();
    if !notes.is_empty() {
        println!("{}", notes.join("\n"));
    }
    println!(
        "vs raw = throughput / raw sqlx throughput on the same workload (above 1: faster than raw)."
    );
}

/// `child RUN [--database-url URL] [--database NAME] [--passes K]`: runs one workload and
/// prints its report. Without `--database`, the child creates a fresh database of its own on
/// the server (`--database-url`, else `$DATABASE_URL`, else the local default) and drops it
/// afterwards, so that a run can be started alone, under a profiler. `--passes K` (the
/// replays, W4) prepares once, then makes the measured phase `K` times and reports the
/// last: each pass runs inside [`measured_pass`], which a profiler can select
/// (`valgrind --tool=callgrind --toggle-collect='esrs_bench::measured_pass*'`), leaving the
/// set-up out.
fn child(args: &[String]) -> ExitCode {
    if args.first().is_some_and(|id| id.contains('+')) {
        return match paired(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("esrs-bench child: {}", ErrorChain::new(&*error));
                ExitCode::FAILURE
            }
        };
    }
    let result = (|| {
        let id = args.first().ok_or("child: no run")?.clone();
        let ChildArgs {
            server,
            database,
            passes,
        } = ChildArgs::parse(&args[1..], 1)?;
        let run = RUNS
            .iter()
            .find(|r| r.id == id)
            .ok_or_else(|| format!("child: unknown run `{id}`"))?;
        let recorder = std::env::var(RECORDER_ENV)
            .ok()
            .map_or(Some(Recorder::None), |name| Recorder::parse(&name))
            .ok_or("child: unknown recorder")?;
        recorder.install()?;
        // W2's clients and the shards run on both cores.
        let threads = if id.starts_with("w2") || id.starts_with("shards") {
            2
        } else {
            1
        };
        let rt = runtime(threads)?;
        // A database of the child's own when none is given.
        let own = (run.postgres && database.is_none())
            .then(|| format!("esrs_bench_{}_child", std::process::id()));
        if let Some(own) = &own {
            rt.block_on(admin(&server, &format!("CREATE DATABASE {own}")))?;
        }
        let url = database
            .as_ref()
            .or(own.as_ref())
            .map(|database| with_database(&server, database));
        let result = (|| {
            let prepared = rt.block_on(prepare(&id, &url))?;
            let mut report = match prepared {
                Some(mut prepared) => {
                    // With several passes, each pass's CPU time, the client's and the
                    // server's (its database's backends), which the machine's other load
                    // disturbs less than the wall-clock time.
                    let mut probe = match (&url, passes > 1) {
                        (Some(_), true) => Some(rt.block_on(raw_conn(&url))?),
                        _ => None,
                    };
                    measuring();
                    let mut last = None;
                    for pass in 1..=passes {
                        let server_before = match &mut probe {
                            Some(probe) => rt.block_on(backends_cpu(probe, &[]))?,
                            None => Vec::new(),
                        };
                        let client_before = measure::cpu_ns(None);
                        let report = measured_pass(&rt, measure(&mut prepared))?;
                        let client = measure::cpu_ns(None)
                            .zip(client_before)
                            .map(|(after, before)| after - before);
                        if passes > 1 {
                            let server = match &mut probe {
                                Some(probe) => {
                                    let after = rt.block_on(backends_cpu(probe, &server_before))?;
                                    Some(after.iter().map(|(_, ns)| ns).sum::<u64>())
                                }
                                None => None,
                            };
                            let ms = |ns: Option<u64>| {
                                ns.map_or("-".to_owned(), |ns| format!("{:.1}", ns as f64 / 1e6))
                            };
                            eprintln!(
                                "[esrs-bench] {id} pass {pass}/{passes}: {:.0} {}/s, CPU ms: \
                                 client {}, server {}",
                                report.throughput(),
                                report.unit,
                                ms(client),
                                ms(server),
                            );
                        }
                        last = Some(report);
                    }
                    last.ok_or("no pass")?
                }
                None => rt.block_on(run_child(&id, url))?,
            };
            report.peak_mib = measure::peak_rss_mib();
            Ok::<_, BoxError>(report)
        })();
        if let Some(own) = &own {
            rt.block_on(admin(
                &server,
                &format!("DROP DATABASE IF EXISTS {own} WITH (FORCE)"),
            ))?;
        }
        result
    })();
    match result {
        Ok(report) => match serde_json::to_string(&report) {
            Ok(json) => {
                println!("RESULT {json}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("esrs-bench child: {}", ErrorChain::new(&error));
                ExitCode::FAILURE
            }
        },
        Err(error) => {
            eprintln!("esrs-bench child: {}", ErrorChain::new(&*error));
            ExitCode::FAILURE
        }
    }
}

/// The options of `child`: the server (`--database-url`, else `$DATABASE_URL`, else the
/// local default), the database (`--database`), and the passes (`--passes`).
struct ChildArgs {
    server: String,
    database: Option<String>,
    passes: u32,
}

impl ChildArgs {
    fn parse(args: &[String], passes: u32) -> Result<Self, BoxError> {
        let mut parsed = Self {
            server: std::env::var("DATABASE_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned()),
            database: None,
            passes,
        };
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            match arg.as_str() {
                "--database-url" => {
                    parsed.server = rest
                        .next()
                        .cloned()
                        .ok_or("child: --database-url needs a value")?
                }
                "--database" => parsed.database = rest.next().cloned(),
                "--passes" => {
                    parsed.passes = rest
                        .next()
                        .and_then(|n| n.parse().ok())
                        .filter(|n| *n > 0)
                        .ok_or("child: --passes needs a positive number")?
                }
                other => return Err(format!("child: unknown argument `{other}`").into()),
            }
        }
        Ok(parsed)
    }
}

/// `child RUN+RUN[+RUN...] --passes K [--database-url URL]`: the runs (W4's, which
/// [`prepare`] can repeat) set up side by side in one fresh database, then `K` rounds of
/// every run once, the order rotating by round; prints every round and, for each run after
/// the first, the median over the rounds of its throughput divided by the first run's in
/// the same round.
fn paired(args: &[String]) -> Result<(), BoxError> {
    let ids: Vec<String> = args[0].split('+').map(str::to_owned).collect();
    let ChildArgs {
        server,
        database,
        passes: rounds,
    } = ChildArgs::parse(&args[1..], 9)?;
    if database.is_some() {
        return Err("child: runs side by side make a database of their own".into());
    }
    let rt = runtime(1)?;
    let own = format!("esrs_bench_{}_pairs", std::process::id());
    rt.block_on(admin(&server, &format!("CREATE DATABASE {own}")))?;
    let url = Some(with_database(&server, &own));
    let result = (|| {
        let mut prepared: Vec<Prepared> = Vec::new();
        for id in &ids {
            // The runs of one implementation share its set-up (one log, read both ways).
            let shared = prepared.iter().find_map(|p| match p {
                Prepared::Projection(store) | Prepared::ReadAll(store) => Some(store.clone()),
                _ => None,
            });
            let raw_ready = prepared
                .iter()
                .any(|p| matches!(p, Prepared::RawReplay(_) | Prepared::RawFoldColumns(_)));
            let run = match (id.as_str(), shared) {
                ("w4:esrs", Some(store)) => Prepared::Projection(store),
                ("w4:esrs-read-all", Some(store)) => Prepared::ReadAll(store),
                ("w4:raw", _) if raw_ready => Prepared::RawReplay(rt.block_on(raw_conn(&url))?),
                ("w4:raw-5col", _) if raw_ready => {
                    Prepared::RawFoldColumns(rt.block_on(raw_conn(&url))?)
                }
                _ => rt
                    .block_on(prepare(id, &url))?
                    .ok_or_else(|| format!("child: `{id}` cannot run side by side"))?,
            };
            prepared.push(run);
        }
        measuring();
        let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); ids.len()];
        for round in 0..rounds as usize {
            let mut throughput = vec![0.0; ids.len()];
            for k in 0..ids.len() {
                let at = (round + k) % ids.len();
                let report = measured_pass(&rt, measure(&mut prepared[at]))?;
                throughput[at] = report.throughput();
            }
            let line: Vec<String> = ids
                .iter()
                .zip(&throughput)
                .map(|(id, t)| format!("{id} {t:.0}"))
                .collect();
            eprintln!(
                "[esrs-bench] round {}/{rounds}: {}",
                round + 1,
                line.join(", ")
            );
            for (k, t) in throughput.iter().enumerate() {
                ratios[k].push(t / throughput[0]);
            }
        }
        for (id, mut ratio) in ids.iter().zip(ratios).skip(1) {
            ratio.sort_by(f64::total_cmp);
            eprintln!(
                "[esrs-bench] {id} / {}: median {:.3} [{:.3}-{:.3}] over {rounds} rounds",
                ids[0],
                ratio[ratio.len() / 2],
                ratio[0],
                ratio[ratio.len() - 1],
            );
        }
        Ok::<_, BoxError>(())
    })();
    rt.block_on(admin(
        &server,
        &format!("DROP DATABASE IF EXISTS {own} WITH (FORCE)"),
    ))?;
    result
}

/// The CPU time of every backend of the database `probe` is connected to (but `probe`'s
/// own), in nanoseconds; given `since` (an earlier answer), the time each has run since,
/// a backend started since counting from its start.
async fn backends_cpu(
    probe: &mut PgConnection,
    since: &[(u32, u64)],
) -> Result<Vec<(u32, u64)>, BoxError> {
    let pids: Vec<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&mut *probe)
    .await?;
    Ok(pids
        .into_iter()
        .filter_map(|pid| {
            let pid = pid.unsigned_abs();
            let now = measure::cpu_ns(Some(pid))?;
            let before = since
                .iter()
                .find(|(p, _)| *p == pid)
                .map_or(0, |(_, ns)| *ns);
            Some((
                pid,
                if since.is_empty() {
                    now
                } else {
                    now.saturating_sub(before)
                },
            ))
        })
        .collect())
}

/// Runs `statement` on the server of `url` (its own database), on a connection of its own.
async fn admin(url: &str, statement: &str) -> Result<(), BoxError> {
    let mut conn = PgConnectOptions::from_str(url)?
        .disable_statement_logging()
        .connect()
        .await?;
    conn.execute(statement).await?;
    conn.close().await?;
    Ok(())
}

/// The measured phase of a prepared run, once: what a profiler selects by this function's
/// name. Never inlined, so that its frame is on the stack for every instruction of the pass.
#[inline(never)]
fn measured_pass<F: std::future::Future>(rt: &tokio::runtime::Runtime, pass: F) -> F::Output {
    rt.block_on(pass)
}

/// A run whose set-up is done, ready for its measured phase (any number of times).
enum Prepared {
    /// W4 by hand-written sqlx, on its connection.
    RawReplay(PgConnection),
    /// W4 by hand-written sqlx, reading only the fold's columns.
    RawFoldColumns(PgConnection),
    /// W4 through the projection runner on PostgreSQL.
    Projection(PgStore),
    /// W4 through `read_all` alone.
    ReadAll(PgStore),
    /// W4 through the projection runner on the in-memory store.
    MemProjection(InMemoryStore),
}

/// Prepares the runs that [`measure()`] can repeat; `None` for the others, which
/// [`run_child`] runs whole.
async fn prepare(id: &str, connect: &Option<String>) -> Result<Option<Prepared>, BoxError> {
    Ok(Some(match id {
        "w4:raw" | "w4:raw-5col" => {
            let mut conn = raw_conn(connect).await?;
            raw::create_schema(&mut conn).await?;
            raw::prepare_log(&mut conn, W4_STREAMS, W4_PER_STREAM).await?;
            analyze(connect).await?;
            if id == "w4:raw" {
                Prepared::RawReplay(conn)
            } else {
                Prepared::RawFoldColumns(conn)
            }
        }
        "w4:esrs" | "w4:esrs-read-all" => {
            let store = pg_store(connect).await?;
            workloads::prepare_log(&store, W4_STREAMS, W4_PER_STREAM).await?;
            analyze(connect).await?;
            if id == "w4:esrs" {
                Prepared::Projection(store)
            } else {
                Prepared::ReadAll(store)
            }
        }
        "w4:mem" => {
            let store = InMemoryStore::new();
            workloads::prepare_log(&store, W4_STREAMS, W4_PER_STREAM).await?;
            Prepared::MemProjection(store)
        }
        _ => return Ok(None),
    }))
}

/// The measured phase of a prepared run.
async fn measure(prepared: &mut Prepared) -> Result<Report, BoxError> {
    let events = W4_STREAMS * W4_PER_STREAM;
    match prepared {
        Prepared::RawReplay(conn) => raw::replay(conn, events).await,
        Prepared::RawFoldColumns(conn) => raw::replay_fold_columns(conn, events).await,
        Prepared::Projection(store) => {
            workloads::project(store.clone(), "esrs projection", events).await
        }
        Prepared::ReadAll(store) => workloads::replay(store, "esrs read_all", events).await,
        Prepared::MemProjection(store) => {
            workloads::project(store.clone(), "in-memory projection", events).await
        }
    }
}

/// `url` with its database replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

fn needs_url(url: &Option<String>) -> Result<&str, BoxError> {
    Ok(url.as_deref().ok_or("this run needs PostgreSQL")?)
}

/// A pool for the raw baseline: one connection per client, each held for the whole run.
async fn raw_pool(url: &Option<String>, size: u32) -> Result<PgPool, BoxError> {
    let connect = PgConnectOptions::from_str(needs_url(url)?)?.disable_statement_logging();
    Ok(PgPoolOptions::new()
        .max_connections(size)
        .min_connections(size)
        .test_before_acquire(false)
        .connect_with(connect)
        .await?)
}

/// Opens `clients` connections of `pool` before the timed phase, as the raw runs' pools do
/// (`min_connections`): no run pays for opening its clients' connections while timed.
async fn open_connections(pool: &PgPool, clients: u64) -> Result<(), BoxError> {
    let opened = futures_util::future::try_join_all((0..clients).map(|_| pool.acquire())).await?;
    drop(opened);
    // Lets the pool take them back (it pings each).
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    Ok(())
}

/// A connection for the raw baseline.
async fn raw_conn(url: &Option<String>) -> Result<PgConnection, BoxError> {
    Ok(PgConnectOptions::from_str(needs_url(url)?)?
        .disable_statement_logging()
        .connect()
        .await?)
}

/// The esrs PostgreSQL store as a user opens it: default options, migrated.
async fn pg_store(url: &Option<String>) -> Result<PgStore, BoxError> {
    pg_store_with(url, PgStoreOptions::new()).await
}

/// [`pg_store`] with `options` as the starting point.
async fn pg_store_with(
    url: &Option<String>,
    mut options: PgStoreOptions,
) -> Result<PgStore, BoxError> {
    if let Some(n) = std::env::var(PARTITIONS_ENV)
        .ok()
        .and_then(|n| n.parse().ok())
    {
        options = options.partitions(n);
    }
    if let Some(rows) = std::env::var(PAGE_SIZE_ENV)
        .ok()
        .and_then(|n| n.parse().ok())
    {
        options = options.page_size(rows);
    }
    if let Some(rows) = std::env::var(MAX_PAGE_SIZE_ENV)
        .ok()
        .and_then(|n| n.parse().ok())
    {
        options = options.max_page_size(rows);
    }
    let store = options.connect(needs_url(url)?).await?;
    store.migrate().await?;
    Ok(store)
}

/// Gathers the planner's statistics of the freshly written tables, as autovacuum does on a
/// live database within a minute of such writes; without them PostgreSQL guesses the size
/// of a range read and may sort where an index scan is far cheaper.
async fn analyze(url: &Option<String>) -> Result<(), BoxError> {
    let mut conn = raw_conn(url).await?;
    conn.execute("ANALYZE").await?;
    conn.close().await?;
    Ok(())
}

/// Starts measuring: what follows is the run's peak memory.
fn measuring() {
    if !measure::reset_peak_rss() {
        eprintln!("[esrs-bench] cannot reset the peak-memory mark; peaks include set-up");
    }
}

async fn run_child(id: &str, connect: Option<String>) -> Result<Report, BoxError> {
    let memory = || Arc::new(Repository::<domain::Account, _>::new(InMemoryStore::new()));
    let long_name = "W3 load 10,000";
    let short_name = "W3 load 10";
    Ok(match id {
        "w1:raw" | "w2:raw" => {
            let spec = if id == "w1:raw" { W1 } else { W2 };
            let pool = raw_pool(&connect, spec.clients as u32).await?;
            raw::create_schema(&mut *pool.acquire().await?).await?;
            measuring();
            raw::commands(&pool, spec, false).await?
        }
        "w1:raw-pool" | "w2:raw-pool" => {
            let spec = if id == "w1:raw-pool" { W1 } else { W2 };
            // Configured as `PgStore::connect` configures its pool.
            let pool = PgPoolOptions::new()
                .max_connections(10)
                .test_before_acquire(false)
                .connect_with(PgConnectOptions::from_str(needs_url(&connect)?)?)
                .await?;
            raw::create_schema(&mut *pool.acquire().await?).await?;
            open_connections(&pool, spec.clients).await?;
            measuring();
            raw::commands(&pool, spec, true).await?
        }
        "w3-long:raw-pool" | "w3-short:raw-pool" => {
            let (name, events) = if id == "w3-long:raw-pool" {
                (long_name, W3_LONG)
            } else {
                (short_name, W3_SHORT)
            };
            let pool = PgPoolOptions::new()
                .max_connections(10)
                .test_before_acquire(false)
                .connect_with(PgConnectOptions::from_str(needs_url(&connect)?)?)
                .await?;
            let mut conn = pool.acquire().await?;
            raw::create_schema(&mut conn).await?;
            raw::prepare_long_stream(&mut conn, events).await?;
            drop(conn);
            analyze(&connect).await?;
            measuring();
            raw::loads_pooled(&pool, name, events, W3_LOADS).await?
        }
        "w1:esrs" | "w2:esrs" | "w1:esrs-cache" | "w2:esrs-cache" => {
            let spec = if id.starts_with("w1") { W1 } else { W2 };
            let store = pg_store(&connect).await?;
            open_connections(store.pool(), spec.clients).await?;
            let mut repo = Repository::<domain::Account, _>::new(store);
            let mut implementation = "esrs";
            if id.ends_with("cache") {
                repo = repo.with_cache(spec.streams as usize);
                implementation = "esrs + cache";
            }
            measuring();
            workloads::commands(Arc::new(repo), spec, implementation).await?
        }
        "w1:esrs-quiet" | "w2:esrs-quiet" => {
            let spec = if id.starts_with("w1") { W1 } else { W2 };
            let store = PgStoreOptions::new()
                .notifications(false)
                .connect(needs_url(&connect)?)
                .await?;
            store.migrate().await?;
            open_connections(store.pool(), spec.clients).await?;
            let repo = Repository::<domain::Account, _>::new(store);
            measuring();
            workloads::commands(Arc::new(repo), spec, "esrs, no NOTIFY").await?
        }
        "w1:esrs-personal" | "w2:esrs-personal" => {
            let spec = if id.starts_with("w1") { W1 } else { W2 };
            let store = pg_store(&connect).await?;
            open_connections(store.pool(), spec.clients).await?;
            let keys =
                esrs_postgres::PgKeyStore::open(&store, esrs_core::personal::MasterKey::generate())
                    .await?;
            let repo = Repository::<domain::PersonalAccount, _>::new(store).with_key_store(keys);
            measuring();
            workloads::commands(Arc::new(repo), spec, "esrs, personal").await?
        }
        "w1:mem-personal" | "w2:mem-personal" => {
            let spec = if id.starts_with("w1") { W1 } else { W2 };
            let repo = Repository::<domain::PersonalAccount, _>::new(InMemoryStore::new())
                .with_key_store(esrs_core::personal::InMemoryKeyStore::new());
            measuring();
            workloads::commands(Arc::new(repo), spec, "in-memory, personal").await?
        }
        "w1:mem" | "w2:mem" => {
            let spec = if id == "w1:mem" { W1 } else { W2 };
            measuring();
            workloads::commands(memory(), spec, "in-memory").await?
        }
        "w1:mem-cache" | "w2:mem-cache" => {
            let spec = if id == "w1:mem-cache" { W1 } else { W2 };
            let repo = Repository::<domain::Account, _>::new(InMemoryStore::new())
                .with_cache(spec.streams as usize);
            measuring();
            workloads::commands(Arc::new(repo), spec, "in-memory + cache").await?
        }
        "w3-long:raw" | "w3-short:raw" => {
            let (name, events) = if id == "w3-long:raw" {
                (long_name, W3_LONG)
            } else {
                (short_name, W3_SHORT)
            };
            let mut conn = raw_conn(&connect).await?;
            raw::create_schema(&mut conn).await?;
            raw::prepare_long_stream(&mut conn, events).await?;
            analyze(&connect).await?;
            measuring();
            raw::loads(&mut conn, name, events, W3_LOADS).await?
        }
        "w3-long:esrs" | "w3-long:esrs-snap" | "w3-short:esrs" | "w3-short:esrs-snap" => {
            let (name, events) = if id.starts_with("w3-long") {
                (long_name, W3_LONG)
            } else {
                (short_name, W3_SHORT)
            };
            let snapshot = id.ends_with("snap");
            let store = pg_store(&connect).await?;
            workloads::prepare_long_stream(&store, events, snapshot).await?;
            analyze(&connect).await?;
            measuring();
            let implementation = if snapshot { "esrs + snapshots" } else { "esrs" };
            workloads::loads(store, name, implementation, events, W3_LOADS, snapshot).await?
        }
        "w3-long:esrs-read" => {
            let store = pg_store(&connect).await?;
            workloads::prepare_long_stream(&store, W3_LONG, false).await?;
            analyze(&connect).await?;
            measuring();
            workloads::read_only(store, long_name, W3_LONG, W3_LOADS).await?
        }
        "w3-long:mem" | "w3-long:mem-snap" | "w3-short:mem" | "w3-short:mem-snap" => {
            let (name, events) = if id.starts_with("w3-long") {
                (long_name, W3_LONG)
            } else {
                (short_name, W3_SHORT)
            };
            let snapshot = id.ends_with("snap");
            let store = InMemoryStore::new();
            workloads::prepare_long_stream(&store, events, snapshot).await?;
            measuring();
            let implementation = if snapshot {
                "in-memory + snapshots"
            } else {
                "in-memory"
            };
            workloads::loads(store, name, implementation, events, W3_LOADS, snapshot).await?
        }
        "w5:raw" => {
            let mut conn = raw_conn(&connect).await?;
            raw::create_schema(&mut conn).await?;
            conn.execute(raw::QUIET_INDEX).await?;
            conn.execute(workloads::w5_insert("raw_events", 0, W5_EVENTS, false).as_str())
                .await?;
            analyze(&connect).await?;
            measuring();
            raw::quiet(&mut conn, W5_HANDLED, W5_EVENTS / W5_NAMES).await?
        }
        "w5:esrs-filtered" | "w5:esrs-unfiltered" => {
            let store = pg_store(&connect).await?;
            let table = format!("{}.events", store.schema());
            store
                .pool()
                .execute(workloads::w5_insert(&table, 0, W5_EVENTS, false).as_str())
                .await?;
            analyze(&connect).await?;
            measuring();
            let tail = async {
                store
                    .pool()
                    .execute(workloads::w5_insert(&table, W5_EVENTS, W5_TAIL, true).as_str())
                    .await?;
                analyze(&connect).await
            };
            workloads::quiet(store.clone(), id == "w5:esrs-filtered", tail).await?
        }
        shards if shards.starts_with("shards:") => {
            let count: u32 = shards["shards:".len()..].parse()?;
            // Each shard reads a page on one connection while its batch's transaction
            // holds another.
            let options = PgStoreOptions::new().max_connections(2 * count + 2);
            let store = pg_store_with(&connect, options).await?;
            workloads::prepare_log(&store, W4_STREAMS, W4_PER_STREAM).await?;
            analyze(&connect).await?;
            measuring();
            shards::replay(store, count, W4_STREAMS * W4_PER_STREAM).await?
        }
        "batch:raw" => {
            let mut conn = raw_conn(&connect).await?;
            raw::create_schema(&mut conn).await?;
            measuring();
            raw::batches(&mut conn, BATCHES, BATCH_EVENTS).await?
        }
        "batch:esrs" => {
            let store = pg_store(&connect).await?;
            measuring();
            workloads::batches(&store, "esrs", BATCHES, BATCH_EVENTS).await?
        }
        "batch:mem" => {
            let store = InMemoryStore::new();
            measuring();
            workloads::batches(&store, "in-memory", BATCHES, BATCH_EVENTS).await?
        }
        other => return Err(format!("unknown run `{other}`").into()),
    })
}

/// The round trips per call of `f`, after one warm-up call that prepares the statements.
async fn count<'a>(
    proxy: &proxy::Proxy,
    n: u64,
    mut f: impl FnMut(u64) -> workloads::BoxFuture<'a>,
) -> Result<(f64, f64), BoxError> {
    let settle = || tokio::time::sleep(std::time::Duration::from_millis(50));
    f(0).await?;
    // The pool pings a connection when it is returned: let that land before counting.
    settle().await;
    let before = proxy.round_trips();
    for i in 1..=n {
        f(i).await?;
    }
    settle().await;
    let after = proxy.round_trips();
    Ok((
        (after.0 - before.0) as f64 / n as f64,
        (after.1 - before.1) as f64 / n as f64,
    ))
}

/// Counts the round trips of one operation of each kind through a proxy.
async fn round_trips(admin: &PgConnectOptions, keep: bool) -> Result<(), BoxError> {
    let database = format!("esrs_bench_{}_roundtrips", std::process::id());
    let mut conn = admin.connect().await?;
    conn.execute(format!("CREATE DATABASE {database}").as_str())
        .await?;
    let result = round_trips_in(admin, &database).await;
    if !keep {
        conn.execute(format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)").as_str())
            .await?;
    }
    conn.close().await?;
    let lines = result?;
    println!();
    println!(
        "Round trips per operation, counted by a proxy (statements: Sync or Query messages; \
         pings: sqlx pool liveness checks, a Sync alone):"
    );
    println!("  {:<64} {:>10} {:>6}", "operation", "statements", "pings");
    for (what, (statements, pings)) in lines {
        println!("  {what:<64} {statements:>10.2} {pings:>6.2}");
    }
    Ok(())
}

async fn round_trips_in(
    admin: &PgConnectOptions,
    database: &str,
) -> Result<Vec<(String, (f64, f64))>, BoxError> {
    use std::net::ToSocketAddrs;
    let upstream = (admin.get_host(), admin.get_port())
        .to_socket_addrs()?
        .next()
        .ok_or("cannot resolve the PostgreSQL host")?;
    let proxy = proxy::Proxy::start(upstream).await?;
    let through_proxy = admin
        .clone()
        .host("127.0.0.1")
        .port(proxy.addr.port())
        .ssl_mode(sqlx::postgres::PgSslMode::Disable)
        .database(database);
    let mut lines = Vec::new();
    const N: u64 = 50;

    // Raw: a W1 command (load + append) on a dedicated connection, then through sqlx's pool
    // (one checkout per query), as most programs use it.
    let conn = tokio::sync::Mutex::new(through_proxy.connect().await?);
    raw::create_schema(&mut *conn.lock().await).await?;
    lines.push((
        "raw sqlx command (load + append), dedicated connection".to_owned(),
        count(&proxy, N, |_| {
            Box::pin(async { raw::round_trip_command(&mut *conn.lock().await, "rt").await })
        })
        .await?,
    ));
    conn.into_inner().close().await?;
    for test_before_acquire in [false, true] {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .test_before_acquire(test_before_acquire)
            .connect_with(through_proxy.clone())
            .await?;
        let stream = format!("rt-pool-{test_before_acquire}");
        let label = if test_before_acquire {
            "raw sqlx command, pool checkout per query (sqlx default)"
        } else {
            "raw sqlx command, pool checkout per query, no ping on acquire"
        };
        let counted = count(&proxy, N, |_| {
            Box::pin(raw::round_trip_pooled(&pool, &stream))
        })
        .await?;
        lines.push((label.to_owned(), counted));
        pool.close().await;
    }

    // esrs on PgStore, with a pool configured as `PgStore::connect` configures it.
    let pool = PgPoolOptions::new()
        .max_connections(10)
        .test_before_acquire(false)
        .connect_with(through_proxy.clone())
        .await?;
    let store = PgStoreOptions::new().build(pool)?;
    store.migrate().await?;
    // The same with notifications off: what remains is the caller's own round trips.
    let quiet_pool = PgPoolOptions::new()
        .max_connections(10)
        .test_before_acquire(false)
        .connect_with(through_proxy.clone())
        .await?;
    let quiet = PgStoreOptions::new()
        .notifications(false)
        .build(quiet_pool)?;
    let repo = Repository::<domain::Account, _>::new(store.clone());
    lines.push((
        "esrs append of 1 event (EventStore::append)".into(),
        count(&proxy, N, |i| {
            Box::pin(workloads::append_one(&store, format!("rt-append-{i}")))
        })
        .await?,
    ));
    lines.push((
        "esrs command, no cache (load + decide + append)".into(),
        count(&proxy, N, |_| {
            Box::pin(workloads::execute_one(&repo, "rt-command"))
        })
        .await?,
    ));
    let cached = Repository::<domain::Account, _>::new(store.clone()).with_cache(10);
    lines.push((
        "esrs command, cache hit (decide + append)".into(),
        count(&proxy, N, |_| {
            Box::pin(workloads::execute_one(&cached, "rt-cached"))
        })
        .await?,
    ));
    lines.push((
        "esrs append of 1 event, notifications off".into(),
        count(&proxy, N, |i| {
            Box::pin(workloads::append_one(&quiet, format!("rt-quiet-{i}")))
        })
        .await?,
    ));
    let quiet_cached = Repository::<domain::Account, _>::new(quiet.clone()).with_cache(10);
    lines.push((
        "esrs command, cache hit, notifications off".into(),
        count(&proxy, N, |_| {
            Box::pin(workloads::execute_one(&quiet_cached, "rt-quiet-cached"))
        })
        .await?,
    ));
    lines.push((
        "esrs load of a 10-event stream".into(),
        count(&proxy, N, |_| {
            Box::pin(async {
                let loaded = repo.load(&esrs_core::StreamId::new("rt-command")?).await?;
                workloads::ensure(loaded.version > 0, "the stream exists")
            })
        })
        .await?,
    ));
    lines.push((
        "esrs append of 1,000 events in one call".into(),
        count(&proxy, 5, |i| {
            Box::pin(workloads::batches_one(
                &store,
                format!("rt-batch-{i}"),
                BATCH_EVENTS,
            ))
        })
        .await?,
    ));
    Ok(lines)
}
