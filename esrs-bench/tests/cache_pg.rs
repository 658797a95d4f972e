//! The repository's aggregate cache on PostgreSQL, with two writer processes, each with its
//! own cache and its own connections: no update is lost, versions stay 1..n, every
//! acknowledged command is stored once, and a stale cache is caught by the version check.
//!
//! The test spawns this test binary twice, running the `writer_process` helper below; the
//! helper does nothing unless the parent set `ESRS_CACHE_WRITER`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::{Duration, Instant};

use esrs_core::error::EncodeError;
use esrs_core::store::Payload;
use esrs_core::{Aggregate, DecodeError, EventSet, EventStore, Repository, StreamId, Version};
use esrs_postgres::{PgStore, PgStoreOptions};
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};

const ENV: &str = "ESRS_CACHE_WRITER";
/// Rounds of the lock-step phase: the two processes write one stream in turns.
const ROUNDS: u64 = 15;
/// Commands of each process in the free-running phase, over [`STREAMS`] streams.
const COMMANDS: u64 = 40;
const STREAMS: u64 = 3;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Added {
    n: u64,
}

#[derive(Debug, Clone, PartialEq)]
struct TallyEvent(Added);

impl EventSet for TallyEvent {
    const NAMES: &'static [&'static str] = &["Added"];
    fn name(&self) -> &'static str {
        "Added"
    }
    fn schema_version(&self) -> u32 {
        1
    }
    fn encode(&self) -> Result<Payload, EncodeError> {
        esrs_core::store::encode_json("Added", &self.0)
    }
    fn decode(name: &str, version: u32, payload: &str) -> Result<Self, DecodeError> {
        match name {
            "Added" => Ok(TallyEvent(DecodeError::parse("Added", version, payload)?)),
            _ => Err(DecodeError::UnknownName {
                name: name.to_owned(),
                known: Self::NAMES.to_vec(),
            }),
        }
    }
}

/// Every number added, in order.
#[derive(Debug, Clone, Default, PartialEq)]
struct Tally {
    added: Vec<u64>,
}

impl Aggregate for Tally {
    const NAME: &'static str = "tally";
    type Event = TallyEvent;
    fn apply(&mut self, event: &TallyEvent) {
        self.added.push(event.0.n);
    }
}

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

async fn store(schema: &str) -> PgStore {
    PgStoreOptions::new()
        .schema(schema)
        .max_connections(4)
        .connect(&database_url())
        .await
        .expect("PostgreSQL is reachable")
}

fn id(s: &str) -> StreamId {
    StreamId::new(s).unwrap()
}

/// The helper run in each child process: `ESRS_CACHE_WRITER=<schema>:<writer>`.
#[tokio::test]
#[ignore = "a helper the two-process test runs in its children"]
async fn writer_process() {
    let Ok(spec) = std::env::var(ENV) else {
        return;
    };
    let (schema, writer) = spec.split_once(':').expect("schema:writer");
    let writer: u64 = writer.parse().expect("writer number");
    let store = store(schema).await;
    let repo = Repository::<Tally, _>::new(store.clone())
        .with_cache(16)
        .with_retries(1_000);

    // Lock-step: writer w writes stream version 2r + w + 1, so every command after its
    // first finds its cached state one version behind the store.
    let turns = id("turns");
    let turns_stream = repo.stream_of(&turns).unwrap();
    for round in 0..ROUNDS {
        let deadline = Instant::now() + Duration::from_secs(10);
        while store.stream_version(&turns_stream).await.unwrap() != 2 * round + writer {
            assert!(Instant::now() < deadline, "the other writer stopped");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let n = writer * 1_000_000 + round;
        let done = repo
            .execute(&turns, |_: &Tally| {
                Ok::<_, Infallible>(TallyEvent(Added { n }))
            })
            .await
            .unwrap();
        assert_eq!(done.version(), 2 * round + writer + 1);
        println!("ACK turns {n}");
    }
    let stats = repo.cache_stats().unwrap();
    println!("LOCKSTEP {} {} {}", stats.hits, stats.misses, stats.stale);

    // Free-running: both writers race over a few streams.
    for i in 0..COMMANDS {
        let stream = format!("s{}", (i + writer) % STREAMS);
        let n = writer * 1_000_000 + 1_000 + i;
        repo.execute(&id(&stream), |_: &Tally| {
            Ok::<_, Infallible>(TallyEvent(Added { n }))
        })
        .await
        .unwrap();
        println!("ACK {stream} {n}");
    }
}

#[test]
fn two_processes_with_separate_caches_lose_no_update() {
    let schema = format!(
        "cache_test_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let parent_store = rt.block_on(async {
        let store = store(&schema).await;
        store.migrate().await.unwrap();
        store
    });

    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..2)
        .map(|writer| {
            std::process::Command::new(&exe)
                .args(["writer_process", "--exact", "--ignored", "--nocapture"])
                .env(ENV, format!("{schema}:{writer}"))
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();

    let mut acked: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for output in &outputs {
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "a writer failed:\n{stdout}");
        for line in stdout.lines() {
            let fields: Vec<_> = line.split_whitespace().collect();
            match fields.as_slice() {
                ["ACK", stream, n] => acked
                    .entry((*stream).to_owned())
                    .or_default()
                    .push(n.parse().unwrap()),
                ["LOCKSTEP", hits, misses, stale] => {
                    let [hits, misses, stale]: [u64; 3] =
                        [hits, misses, stale].map(|v| v.parse().unwrap());
                    // The first command loads; every later one hits a stale entry, is
                    // refused by the version check, reloads and succeeds.
                    assert_eq!((hits, misses, stale), (ROUNDS - 1, 1, ROUNDS - 1));
                }
                _ => {}
            }
        }
    }
    assert_eq!(
        acked.values().map(Vec::len).sum::<usize>() as u64,
        2 * (ROUNDS + COMMANDS),
        "every command was acknowledged"
    );

    rt.block_on(async {
        for (stream, numbers) in &mut acked {
            let stored: Vec<_> = parent_store
                .read_stream(
                    &StreamId::in_category(Tally::NAME, &id(stream)).unwrap(),
                    1,
                    Version::MAX,
                )
                .try_collect()
                .await
                .unwrap();
            let versions: Vec<_> = stored.iter().map(|e| e.version).collect();
            assert_eq!(versions, (1..=stored.len() as u64).collect::<Vec<_>>());
            let mut stored_numbers: Vec<_> = stored
                .iter()
                .map(|e| e.decode::<TallyEvent>().unwrap().0.n)
                .collect();
            if stream == "turns" {
                // Strict alternation: writer 0, writer 1, writer 0 …
                let writers: Vec<_> = stored_numbers.iter().map(|n| n / 1_000_000).collect();
                assert!(writers.iter().enumerate().all(|(i, w)| *w == i as u64 % 2));
            }
            stored_numbers.sort_unstable();
            numbers.sort_unstable();
            assert_eq!(
                &stored_numbers, numbers,
                "stream {stream}: each acked command once"
            );
        }
        sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(parent_store.pool())
            .await
            .unwrap();
    });
}
