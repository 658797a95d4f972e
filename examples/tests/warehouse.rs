//! The warehouse end to end against PostgreSQL and NATS JetStream: invoices issued and
//! relayed by one store, the finance report built from JetStream in a schema of its own,
//! every invoice counted once however often the relay and the report run.
//!
//! Needs PostgreSQL (`DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/test`) and
//! NATS with JetStream (`NATS_URL`, default `nats://127.0.0.1:4222`). Works in schemas and a
//! JetStream stream of its own, removed at the end.

use esrs_core::error::ErrorChain;
use esrs_core::projection::ProjectionError;
use esrs_core::{BoxError, Projection, RecordedEvent};
use esrs_examples::warehouse::{
    CustomerTotal, InvoiceEvent, InvoiceReport, create_stream_named, issue_invoice, relay_to,
};
use esrs_nats::async_nats::{self, jetstream};
use esrs_nats::{ConsumerError, JetStreamProjection};
use esrs_postgres::{PgCheckpoints, PgStore, PgStoreOptions, PgTransaction, sqlx};

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// The issuing store, the reporting store and the JetStream stream of one test.
struct Fixture {
    issuing: PgStore,
    reporting: PgStore,
    jetstream: jetstream::Context,
    stream: String,
    prefix: String,
    schemas: [String; 2],
}

impl Fixture {
    async fn new() -> Self {
        let tag = esrs_core::uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let schemas = [format!("warehouse_i_{tag}"), format!("warehouse_r_{tag}")];
        let mut stores = Vec::new();
        for schema in &schemas {
            let store = PgStoreOptions::new()
                .schema(schema)
                .connect(&database_url())
                .await
                .unwrap();
            store.migrate().await.unwrap();
            stores.push(store);
        }
        let reporting = stores.pop().unwrap();
        let issuing = stores.pop().unwrap();
        let jetstream = jetstream::new(async_nats::connect(nats_url()).await.unwrap());
        let stream = format!("WAREHOUSE_{}", tag.to_uppercase());
        let prefix = format!("warehouse_{tag}");
        create_stream_named(&jetstream, &stream, &prefix)
            .await
            .unwrap();
        Self {
            issuing,
            reporting,
            jetstream,
            stream,
            prefix,
            schemas,
        }
    }

    fn report(&self) -> InvoiceReport {
        InvoiceReport::new(format!("{}.invoices", self.schemas[1]))
    }

    async fn relay(&self) {
        relay_to(
            &self.issuing,
            self.jetstream.clone(),
            &self.stream,
            &self.prefix,
        )
        .await
        .unwrap();
    }

    async fn consumer<P: Projection<PgTransaction>>(
        &self,
        projection: P,
    ) -> JetStreamProjection<PgCheckpoints, P> {
        let stream = self.jetstream.get_stream(&self.stream).await.unwrap();
        JetStreamProjection::new(stream, PgCheckpoints::new(&self.reporting), projection)
            .filter_subject(format!("{}.invoice.>", self.prefix))
    }

    async fn messages(&self) -> u64 {
        let mut stream = self.jetstream.get_stream(&self.stream).await.unwrap();
        stream.info().await.unwrap().state.messages
    }

    async fn cleanup(self) {
        let _ = self.jetstream.delete_stream(&self.stream).await;
        for schema in &self.schemas {
            let _ = sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                .execute(self.issuing.pool())
                .await;
        }
    }
}

fn total(customer: &str, invoices: i64, amount_cents: i64) -> CustomerTotal {
    CustomerTotal {
        customer: customer.to_owned(),
        invoices,
        amount_cents,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_counts_every_invoice_once_however_often_relay_and_report_run() {
    let fixture = Fixture::new().await;
    let report = fixture.report();
    report.create_table(fixture.reporting.pool()).await.unwrap();
    for (number, customer, cents) in [("1", "acme", 12_000), ("2", "globex", 7_550)] {
        issue_invoice(&fixture.issuing, number, customer, cents)
            .await
            .unwrap();
    }
    fixture.relay().await;
    // A second relay run publishes nothing again.
    fixture.relay().await;
    assert_eq!(fixture.messages().await, 2);

    let mut consumer = fixture.consumer(report.clone()).await;
    let progress = consumer.catch_up().await.unwrap();
    assert_eq!(progress.checkpoint.sequence, 2);
    assert_eq!(
        report.totals(fixture.reporting.pool()).await.unwrap(),
        [total("acme", 1, 12_000), total("globex", 1, 7_550)]
    );

    // More invoices, relayed and reported by fresh runs of both processes' work.
    issue_invoice(&fixture.issuing, "3", "acme", 3_000)
        .await
        .unwrap();
    fixture.relay().await;
    let mut consumer = fixture.consumer(report.clone()).await;
    consumer.catch_up().await.unwrap();
    // Nothing new: the report's checkpoint keeps it from applying anything twice (the
    // table's primary key would refuse a second row for an invoice).
    consumer.catch_up().await.unwrap();
    assert_eq!(
        report.totals(fixture.reporting.pool()).await.unwrap(),
        [total("acme", 2, 15_000), total("globex", 1, 7_550)]
    );
    fixture.cleanup().await;
}

/// The report, failing on the invoice of one customer until told otherwise.
#[derive(Debug, Clone)]
struct Failing {
    report: InvoiceReport,
    fail_for: Option<String>,
}

impl Projection<PgTransaction> for Failing {
    type Event = InvoiceEvent;

    fn name(&self) -> &str {
        self.report.name()
    }

    async fn handle(
        &mut self,
        tx: &mut PgTransaction,
        event: InvoiceEvent,
        envelope: &RecordedEvent,
    ) -> Result<(), BoxError> {
        let InvoiceEvent::InvoiceIssued(issued) = &event;
        if self.fail_for.as_deref() == Some(issued.customer.as_str()) {
            return Err(format!("the ledger refuses {}", issued.customer).into());
        }
        self.report.handle(tx, event, envelope).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_report_handler_commits_nothing_of_its_batch_and_resumes_without_loss() {
    let fixture = Fixture::new().await;
    let report = fixture.report();
    report.create_table(fixture.reporting.pool()).await.unwrap();
    for (number, customer, cents) in [
        ("1", "acme", 12_000),
        ("2", "initech", 500),
        ("3", "globex", 7_550),
    ] {
        issue_invoice(&fixture.issuing, number, customer, cents)
            .await
            .unwrap();
    }
    fixture.relay().await;

    let failing = Failing {
        report: report.clone(),
        fail_for: Some("initech".to_owned()),
    };
    let mut consumer = fixture.consumer(failing).await;
    let error = consumer.catch_up().await.unwrap_err();
    let ConsumerError::Projection(ProjectionError::Handler {
        stream, version, ..
    }) = &error
    else {
        panic!("expected the handler's error, got {error:?}");
    };
    assert_eq!(stream.as_str(), "invoice-2");
    assert_eq!(*version, 1);
    let shown = ErrorChain::new(&error).to_string();
    assert!(
        shown.contains("stream `invoice-2`") && shown.contains("the ledger refuses initech"),
        "the error names the event and the handler's reason: {shown}"
    );
    // The batch's transaction rolled back: acme's row, written before the failure, is not
    // there, and the checkpoint did not move.
    assert!(
        report
            .totals(fixture.reporting.pool())
            .await
            .unwrap()
            .is_empty()
    );

    // Fixed, the consumer resumes from its checkpoint and applies each invoice once.
    let fixed = Failing {
        report: report.clone(),
        fail_for: None,
    };
    let mut consumer = fixture.consumer(fixed).await;
    let progress = consumer.catch_up().await.unwrap();
    assert_eq!(progress.checkpoint.sequence, 3);
    assert_eq!(
        report.totals(fixture.reporting.pool()).await.unwrap(),
        [
            total("acme", 1, 12_000),
            total("globex", 1, 7_550),
            total("initech", 1, 500)
        ]
    );
    fixture.cleanup().await;
}
