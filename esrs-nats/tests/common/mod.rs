//! Test support: a fresh PostgreSQL store in a schema of its own, a JetStream stream of its
//! own, throwaway NATS servers, and readers of what a JetStream stream holds.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use esrs_core::store::{AppendRequest, NewEvent};
use esrs_core::{EventStore, ExpectedVersion, RecordedEvent, StreamId};
use esrs_nats::async_nats::{self, jetstream};
use esrs_postgres::sqlx::postgres::PgPoolOptions;
use esrs_postgres::{PgStore, PgStoreOptions, sqlx};
use futures_util::StreamExt as _;

pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// The shared NATS server: `NATS_URL`, else the local one.
pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    )
}

/// A store on `schema` (migrated when `migrate`), with a small pool.
pub async fn store_in(schema: &str, migrate: bool) -> PgStore {
    let pool = PgPoolOptions::new()
        .max_connections(6)
        .acquire_timeout(Duration::from_secs(20))
        .connect(&database_url())
        .await
        .expect("the test database is reachable (set DATABASE_URL)");
    let store = PgStoreOptions::new()
        .schema(schema)
        .settle_time(Duration::from_secs(5))
        .poll_interval(Duration::from_millis(200))
        .build(pool)
        .expect("valid options");
    if migrate {
        store.migrate().await.expect("migrations apply");
    }
    store
}

/// A migrated store in a fresh schema, dropped with the guard.
pub async fn fresh_store() -> (PgStore, SchemaGuard) {
    let schema = unique("esrs_nats_t_");
    let store = store_in(&schema, true).await;
    (store, SchemaGuard(schema))
}

/// Drops its schema when dropped.
pub struct SchemaGuard(pub String);

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        // The test's runtime is blocked while this runs: a transaction of the test still
        // open cannot end meanwhile, so its locks are waited for a while only.
        let sql = format!(
            "SET lock_timeout = '20s'; DROP SCHEMA IF EXISTS {} CASCADE",
            self.0
        );
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                use sqlx::{Connection, Executor};
                if let Ok(mut conn) = sqlx::PgConnection::connect(&database_url()).await {
                    let _ = conn.execute(&*sql).await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}

pub async fn jetstream_at(url: &str) -> jetstream::Context {
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .reconnect_delay_callback(|_| Duration::from_millis(100))
        .connect(url)
        .await
        .expect("NATS is reachable (set NATS_URL)");
    jetstream::new(client)
}

/// A JetStream stream of its own taking `<prefix>.>`, deleted with the guard.
pub struct TestStream {
    pub jetstream: jetstream::Context,
    pub name: String,
    pub prefix: String,
}

impl TestStream {
    pub async fn create(jetstream: jetstream::Context, duplicate_window: Duration) -> Self {
        let name = unique("ESRS_T_");
        let prefix = name.to_lowercase();
        jetstream
            .create_stream(jetstream::stream::Config {
                name: name.clone(),
                subjects: vec![format!("{prefix}.>")],
                duplicate_window,
                ..Default::default()
            })
            .await
            .expect("the stream is created");
        Self {
            jetstream,
            name,
            prefix,
        }
    }

    pub async fn stream(&self) -> jetstream::stream::Stream {
        self.jetstream.get_stream(&self.name).await.unwrap()
    }

    pub async fn messages(&self) -> u64 {
        let mut stream = self.stream().await;
        stream.info().await.unwrap().state.messages
    }

    /// Every message of the stream, in stream order, read back as recorded events with
    /// their subject.
    pub async fn read_all(&self) -> Vec<(String, RecordedEvent)> {
        let stream = self.stream().await;
        let total = self.messages().await as usize;
        let consumer = stream
            .create_consumer(jetstream::consumer::pull::Config {
                ack_policy: jetstream::consumer::AckPolicy::None,
                ..Default::default()
            })
            .await
            .unwrap();
        let mut out = Vec::with_capacity(total);
        while out.len() < total {
            let mut batch = consumer
                .fetch()
                .max_messages(1000)
                .expires(Duration::from_secs(1))
                .messages()
                .await
                .unwrap();
            while let Some(message) = batch.next().await {
                let message = message.unwrap();
                let record =
                    esrs_nats::headers::decode(message.headers.as_ref(), &message.payload).unwrap();
                out.push((message.subject.to_string(), record));
            }
        }
        out
    }

    /// Waits until the stream holds `count` messages.
    pub async fn wait_for(&self, count: u64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let now = self.messages().await;
            if now >= count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the stream holds {now} messages, {count} expected"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for TestStream {
    fn drop(&mut self) {
        let (js, name) = (self.jetstream.clone(), self.name.clone());
        let _ = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async move { js.delete_stream(name).await })
        });
    }
}

/// Asserts that `messages` hold each of `expected` events (stream → number of versions)
/// exactly once, and each stream's events in version order.
pub fn assert_exactly_once_in_order(
    messages: &[(String, RecordedEvent)],
    expected: &HashMap<String, u64>,
) {
    let mut next: HashMap<&str, u64> = HashMap::new();
    for (_, record) in messages {
        let version = next.entry(record.stream.as_str()).or_insert(1);
        assert_eq!(
            record.version, *version,
            "stream {} out of order or duplicated",
            record.stream
        );
        *version += 1;
    }
    let total: u64 = expected.values().sum();
    assert_eq!(messages.len() as u64, total, "message count");
    for (stream, versions) in expected {
        assert_eq!(
            next.get(stream.as_str()).copied().unwrap_or(1) - 1,
            *versions,
            "events of {stream}"
        );
    }
}

/// Appends `appends` appends of `per_append` events, round robin over `streams` streams
/// of category `invoice`; returns the events per stream.
pub async fn append_events(
    store: &PgStore,
    streams: usize,
    appends: usize,
    per_append: usize,
    tag: &str,
) -> HashMap<String, u64> {
    let mut expected = HashMap::new();
    for i in 0..appends {
        let stream = format!("invoice-{tag}.{}", i % streams);
        let events = (0..per_append)
            .map(|j| {
                let payload = serde_json::value::to_raw_value(
                    &serde_json::json!({ "append": i, "event": j }),
                )
                .unwrap();
                NewEvent::new("InvoiceIssued", 1, payload)
            })
            .collect();
        store
            .append(AppendRequest::new(
                StreamId::new(&stream).unwrap(),
                ExpectedVersion::Any,
                events,
            ))
            .await
            .expect("append");
        *expected.entry(stream).or_insert(0) += per_append as u64;
    }
    expected
}

/// A throwaway `nats-server -js` on a free port, with its storage in a folder of its own,
/// that a test may stop and start again.
pub struct NatsServer {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl NatsServer {
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(unique("esrs-nats-"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = Self {
            port,
            dir,
            child: None,
        };
        server.resume();
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn resume(&mut self) {
        let binary = std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".to_owned());
        let binary = if which(&binary) {
            binary
        } else {
            "/usr/sbin/nats-server".to_owned()
        };
        let child = Command::new(binary)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts (install nats-server or set NATS_SERVER_BIN)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn which(binary: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {binary}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A pseudo-random number below `bound`, from the clock.
pub fn random_below(bound: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    (nanos.wrapping_mul(6364136223846793005).rotate_right(17)) % bound.max(1)
}
