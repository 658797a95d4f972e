//! The loyalty policy: orders earn a point per 10 spent, exactly once.
//!
//! ```sh
//! cargo run -p esrs-examples --bin loyalty                        # in memory
//! DATABASE_URL=postgres://… cargo run -p esrs-examples --bin loyalty  # PostgreSQL
//! ```

use std::process::ExitCode;

use esrs_core::InMemoryStore;
use esrs_examples::{BoxError, loyalty};
use esrs_postgres::PgStore;

#[tokio::main]
async fn main() -> ExitCode {
    esrs_examples::exit_code(run().await)
}

async fn run() -> Result<(), BoxError> {
    let mut out = std::io::stdout();
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => {
            let store = PgStore::connect(&url).await?;
            store.migrate().await?;
            let suffix = format!("-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
            loyalty::run(store, &suffix, &mut out).await
        }
        _ => loyalty::run(InMemoryStore::new(), "", &mut out).await,
    }
}
