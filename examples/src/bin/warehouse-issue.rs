//! The warehouse example, first process: issues a few invoices and publishes every event of
//! the store not yet published to NATS JetStream, exactly once.
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/test NATS_URL=nats://127.0.0.1:4222 \
//!     cargo run -p esrs-examples --bin warehouse-issue
//! ```
//!
//! Then build the report in another process: `cargo run -p esrs-examples --bin warehouse-report`.

use esrs_examples::warehouse::{create_stream, issue_invoice, relay};
use esrs_nats::async_nats;
use esrs_postgres::PgStoreOptions;

const SCHEMA: &str = "warehouse_example";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let database_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let nats_url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());

    let store = PgStoreOptions::new()
        .schema(SCHEMA)
        .connect(&database_url)
        .await?;
    store.migrate().await?;
    let jetstream = async_nats::jetstream::new(async_nats::connect(&nats_url).await?);
    create_stream(&jetstream).await?;

    // Invoice numbers unique to this run, so that every run adds three invoices.
    let run = esrs_core::uuid::Uuid::new_v4().simple().to_string();
    for (n, customer, cents) in [
        (1, "acme", 12_000),
        (2, "globex", 7_550),
        (3, "acme", 3_000),
    ] {
        issue_invoice(&store, &format!("{}-{n}", &run[..8]), customer, cents).await?;
    }
    let checkpoint = relay(&store, jetstream).await?;
    println!(
        "Issued 3 invoices in schema `{SCHEMA}`; the relay published the log up to {checkpoint}."
    );
    Ok(())
}
