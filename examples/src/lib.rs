//! Runnable examples of esrs, the programs a newcomer reads first.
//!
//! - [`cart`]: a shopping cart with snapshots, idempotency keys and an upcast event;
//! - [`bank`]: a bank account that refuses overdrafts and explains its balance from its
//!   history, as of any earlier version or time;
//! - [`library`]: a library member's loans and an erasure request: personal data encrypted
//!   per member and forgotten on request (`cargo run -p esrs-examples --bin erasure`);
//! - [`loyalty`]: a policy that turns every order into loyalty points, exactly once;
//! - [`leaderboard`]: scores projected into a ranked PostgreSQL table and a Redis sorted set
//!   (`cargo run -p esrs-examples --bin leaderboard`);
//! - [`warehouse`]: invoices issued in one process, published to NATS JetStream exactly once,
//!   and a finance report built from JetStream in another process
//!   (`cargo run -p esrs-examples --bin warehouse-issue`, then `--bin warehouse-report`);
//! - [`load`]: the cart under load with its metrics on a Prometheus endpoint, for the Grafana
//!   dashboard `examples/grafana/esrs.json` (`cargo run -p esrs-examples --bin metrics`);
//! - [`tour`]: the main example (`cargo run -p esrs-examples`), a walk through the cart and
//!   the bank account against a real store.
//!
//! The domain code lives in this library so that the programs in `src/bin` and `src/main.rs`
//! and the tests in `tests/` share it.

pub mod bank;
pub mod cart;
pub mod leaderboard;
pub mod library;
pub mod load;
pub mod loyalty;
pub mod tour;
pub mod warehouse;

/// What an example can fail with: a store error, a refused command, or an error writing its
/// output.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The exit code of an example's `main`: on an error, prints it with its causes (see
/// [`ErrorChain`](esrs_core::error::ErrorChain)) and fails.
pub fn exit_code(result: Result<(), BoxError>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", esrs_core::error::ErrorChain::new(&*error));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
mod readme {}

/// The README's snippets assembled into one program by `build.rs`, against the cart the
/// README shows (not [`cart`]): they must compile together as a user would paste them, and
/// those that run as doc tests run here too.
#[cfg(test)]
#[allow(unreachable_pub, missing_docs, dead_code, clippy::all)]
mod readme {
    include!(concat!(env!("OUT_DIR"), "/readme.rs"));
}
