//! The warehouse example, second process: builds the finance report table from NATS
//! JetStream, without reading esrs's tables, and prints the totals per customer.
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/test NATS_URL=nats://127.0.0.1:4222 \
//!     cargo run -p esrs-examples --bin warehouse-report
//! ```
//!
//! The report and its checkpoint live in schema `warehouse_report` (in a real deployment,
//! the warehouse's own database).

use esrs_examples::warehouse::{InvoiceReport, PREFIX, STREAM, create_stream};
use esrs_nats::{JetStreamProjection, async_nats};
use esrs_postgres::{PgCheckpoints, PgStoreOptions};

const SCHEMA: &str = "warehouse_report";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let database_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let nats_url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());

    // Only the checkpoints table is used of this schema: the report's own database.
    let reporting = PgStoreOptions::new()
        .schema(SCHEMA)
        .connect(&database_url)
        .await?;
    reporting.migrate().await?;
    let report = InvoiceReport::new(format!("{SCHEMA}.invoices"));
    report.create_table(reporting.pool()).await?;

    let jetstream = async_nats::jetstream::new(async_nats::connect(&nats_url).await?);
    create_stream(&jetstream).await?;
    let stream = jetstream.get_stream(STREAM).await?;
    let mut consumer =
        JetStreamProjection::new(stream, PgCheckpoints::new(&reporting), report.clone())
            .filter_subject(format!("{PREFIX}.invoice.>"));
    let progress = consumer.catch_up().await?;
    println!(
        "Report built up to JetStream sequence {}.",
        progress.checkpoint.sequence
    );
    println!("{:<10} {:>8} {:>12}", "customer", "invoices", "total");
    for line in report.totals(reporting.pool()).await? {
        println!(
            "{:<10} {:>8} {:>9}.{:02}",
            line.customer,
            line.invoices,
            line.amount_cents / 100,
            line.amount_cents % 100
        );
    }
    Ok(())
}
