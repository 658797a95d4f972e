//! The warehouse: invoices issued in one process, published to NATS JetStream through the
//! store-as-outbox, and a finance report table built from JetStream in another process that
//! never reads esrs's tables.
//!
//! - [`issue_invoice`] appends an `InvoiceIssued` event to the invoice's stream;
//! - [`relay`] publishes every event of the store to the JetStream stream [`STREAM`]
//!   (subjects `warehouse.<aggregate>.<stream id>`), exactly once;
//! - [`InvoiceReport`] is the report table, written in the consumer's transaction with its
//!   checkpoint, so every invoice counts exactly once.
//!
//! Run `cargo run -p esrs-examples --bin warehouse-issue`, then
//! `cargo run -p esrs-examples --bin warehouse-report`.

use std::time::Duration;

use esrs_core::store::{AppendRequest, NewEvent};
use esrs_core::{
    Aggregate, BoxError, Event, EventStore, ExpectedVersion, Position, Projection, RecordedEvent,
    StreamId, aggregate,
};
use esrs_nats::async_nats::jetstream;
use esrs_nats::{Outbox, Relay};
use esrs_postgres::{PgCheckpoints, PgStore, PgTransaction};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

/// The JetStream stream the invoices go to.
pub const STREAM: &str = "WAREHOUSE";
/// The first token of its subjects.
pub const PREFIX: &str = "warehouse";

/// An invoice was issued to a customer.
#[derive(Event, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvoiceIssued {
    /// The customer billed.
    pub customer: String,
    /// The amount, in cents.
    pub amount_cents: i64,
}

/// An invoice: the aggregate whose stream holds its history.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Invoice {
    /// Whether it was issued.
    pub issued: bool,
}

#[aggregate(name = "invoice")]
impl Invoice {
    #[apply]
    fn issued(&mut self, _e: &InvoiceIssued) {
        self.issued = true;
    }
}

/// Appends the `InvoiceIssued` event of invoice `number` (stream `invoice-<number>`).
pub async fn issue_invoice<S: EventStore>(
    store: &S,
    number: &str,
    customer: &str,
    amount_cents: i64,
) -> esrs_core::Result<()> {
    let event = InvoiceEvent::from(InvoiceIssued {
        customer: customer.to_owned(),
        amount_cents,
    });
    let stream = StreamId::in_category(<Invoice as Aggregate>::NAME, &StreamId::new(number)?)?;
    store
        .append(AppendRequest::new(
            stream,
            ExpectedVersion::NoStream,
            vec![NewEvent::encode(&event)?],
        ))
        .await?;
    Ok(())
}

/// Creates the JetStream stream [`STREAM`] if it does not exist: subjects `warehouse.>`,
/// a duplicate window of two minutes (the relay's default).
pub async fn create_stream(jetstream: &jetstream::Context) -> Result<(), BoxError> {
    create_stream_named(jetstream, STREAM, PREFIX).await
}

/// Creates the JetStream stream `name` if it does not exist, taking the subjects
/// `<prefix>.>`, with a duplicate window of two minutes (the relay's default).
pub async fn create_stream_named(
    jetstream: &jetstream::Context,
    name: &str,
    prefix: &str,
) -> Result<(), BoxError> {
    jetstream
        .get_or_create_stream(jetstream::stream::Config {
            name: name.to_owned(),
            subjects: vec![format!("{prefix}.>")],
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await?;
    Ok(())
}

/// Publishes every event of `store` not yet published to [`STREAM`], then returns the
/// relay's checkpoint.
pub async fn relay(store: &PgStore, jetstream: jetstream::Context) -> Result<Position, BoxError> {
    relay_to(store, jetstream, STREAM, PREFIX).await
}

/// Publishes every event of `store` not yet published to the JetStream stream `name`,
/// under subjects `<prefix>.<aggregate>.<stream id>`, then returns the relay's checkpoint.
pub async fn relay_to(
    store: &PgStore,
    jetstream: jetstream::Context,
    name: &str,
    prefix: &str,
) -> Result<Position, BoxError> {
    let relay = Relay::builder(jetstream, name)
        .subject_prefix(prefix)
        .build()
        .await?;
    let mut runner = esrs_core::ProjectionRunner::new(
        store.clone(),
        Outbox::new(PgCheckpoints::new(store)),
        relay,
    );
    Ok(runner.catch_up().await?)
}

/// The finance report: one row per invoice, in a table of the reporting database.
#[derive(Debug, Clone)]
pub struct InvoiceReport {
    table: String,
}

/// A customer's line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerTotal {
    /// The customer.
    pub customer: String,
    /// Invoices issued to them.
    pub invoices: i64,
    /// Their total, in cents.
    pub amount_cents: i64,
}

impl InvoiceReport {
    /// The report kept in `table` (an identifier of the application's choosing).
    pub fn new(table: impl Into<String>) -> Self {
        Self {
            table: table.into(),
        }
    }

    /// Creates the table if it does not exist.
    pub async fn create_table(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS {} (
                invoice text PRIMARY KEY,
                customer text NOT NULL,
                amount_cents bigint NOT NULL,
                issued_at timestamptz NOT NULL
            )",
            self.table
        ))
        .execute(pool)
        .await?;
        Ok(())
    }

    /// The totals per customer, largest first.
    pub async fn totals(&self, pool: &PgPool) -> Result<Vec<CustomerTotal>, sqlx::Error> {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(&format!(
            "SELECT customer, count(*), sum(amount_cents)::bigint FROM {}
             GROUP BY customer ORDER BY sum(amount_cents) DESC, customer",
            self.table
        ))
        .fetch_all(pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(customer, invoices, amount_cents)| CustomerTotal {
                customer,
                invoices,
                amount_cents,
            })
            .collect())
    }
}

impl Projection<PgTransaction> for InvoiceReport {
    type Event = InvoiceEvent;

    fn name(&self) -> &str {
        "invoice_report"
    }

    async fn handle(
        &mut self,
        tx: &mut PgTransaction,
        event: InvoiceEvent,
        envelope: &RecordedEvent,
    ) -> Result<(), BoxError> {
        let InvoiceEvent::InvoiceIssued(e) = event;
        // A plain INSERT: applying an invoice twice would fail on the primary key, which
        // the consumer's checkpoint, committed in this transaction, never lets happen.
        sqlx::query(&format!(
            "INSERT INTO {} (invoice, customer, amount_cents, issued_at) VALUES ($1, $2, $3, $4)",
            self.table
        ))
        .bind(envelope.stream.as_str())
        .bind(&e.customer)
        .bind(e.amount_cents)
        .bind(envelope.recorded_at)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}
