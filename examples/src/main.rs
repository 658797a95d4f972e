//! The main example: a walk through the shopping cart and the bank account.
//!
//! ```sh
//! cargo run -p esrs-examples                                                        # in memory
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo run -p esrs-examples  # PostgreSQL
//! ```
//!
//! On PostgreSQL the events go to the `esrs` schema of the database (created on first use),
//! under ids with a random suffix so that every run starts from empty streams.

use std::process::ExitCode;

use esrs_core::InMemoryStore;
use esrs_examples::BoxError;
use esrs_examples::tour::{self, Ids};
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
            println!("On PostgreSQL, schema `{}`.\n", store.schema());
            tour::run(store, &Ids::unique(), &mut out).await
        }
        _ => {
            println!("In memory (set DATABASE_URL to run on PostgreSQL).\n");
            tour::run(InMemoryStore::new(), &Ids::fixed(), &mut out).await
        }
    }
}
