//! The cart under load, its metrics served for Prometheus at `/metrics`: what the Grafana
//! dashboard `examples/grafana/esrs.json` shows.
//!
//! ```sh
//! cargo run -p esrs-examples --bin metrics                           # in memory, port 9464
//! DATABASE_URL=postgres://… cargo run -p esrs-examples --bin metrics  # PostgreSQL
//! cargo run -p esrs-examples --bin metrics -- --port 9500 --rounds 0 # again and again
//! ```
//!
//! `--port N` (or `METRICS_PORT`) sets the port (default 9464); `--rounds N` the rounds of
//! load (default 1; 0: until stopped). On PostgreSQL the program also samples the store's
//! health every 5 seconds (`PgStore::sample_health`). After the last round the endpoint
//! stays up for `--linger` seconds (default 0), for a last scrape.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use esrs_core::InMemoryStore;
use esrs_examples::BoxError;
use esrs_examples::load::{self, DEFAULT_PORT, Load};
use esrs_postgres::PgStore;

#[tokio::main]
async fn main() -> ExitCode {
    esrs_examples::exit_code(run().await)
}

/// The command line: `--port`, `--rounds`, `--linger`.
struct Args {
    port: u16,
    rounds: u64,
    linger: u64,
}

fn args() -> Result<Args, BoxError> {
    let mut args = Args {
        port: match std::env::var("METRICS_PORT") {
            Ok(port) => port
                .parse()
                .map_err(|_| format!("METRICS_PORT is not a port: {port}"))?,
            Err(_) => DEFAULT_PORT,
        },
        rounds: 1,
        linger: 0,
    };
    let mut given = std::env::args().skip(1);
    while let Some(arg) = given.next() {
        let mut value = |name: &str| -> Result<u64, BoxError> {
            given
                .next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{name} needs a number").into())
        };
        match arg.as_str() {
            "--port" => {
                args.port = u16::try_from(value("--port")?).map_err(|_| "--port is not a port")?
            }
            "--rounds" => args.rounds = value("--rounds")?,
            "--linger" => args.linger = value("--linger")?,
            other => return Err(format!("unknown argument `{other}`").into()),
        }
    }
    Ok(args)
}

async fn run() -> Result<(), BoxError> {
    let args = args()?;
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, args.port));
    load::serve_metrics(addr)?;
    println!("metrics on http://{addr}/metrics");
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => {
            let store = PgStore::connect(&url).await?;
            store.migrate().await?;
            let sampled = store.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_secs(5));
                loop {
                    every.tick().await;
                    if let Err(error) = sampled.sample_health().await {
                        eprintln!("cannot sample the store's health: {error}");
                    }
                }
            });
            rounds(store, &args).await
        }
        _ => rounds(InMemoryStore::new(), &args).await,
    }
}

async fn rounds<S: esrs_core::EventStore + Clone>(store: S, args: &Args) -> Result<(), BoxError> {
    let mut round = 0;
    while args.rounds == 0 || round < args.rounds {
        round += 1;
        let load = Load {
            prefix: format!("load-{}-{round}-", std::process::id()),
            ..Load::default()
        };
        let summary = load::run(store.clone(), &load).await?;
        println!(
            "round {round}: {} appended, {} replayed, {} refused, {} out of retries, {} items projected",
            summary.appended,
            summary.replayed,
            summary.rejected,
            summary.gave_up,
            summary.items_projected
        );
    }
    tokio::time::sleep(Duration::from_secs(args.linger)).await;
    Ok(())
}
