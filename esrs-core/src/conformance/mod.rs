//! The conformance suite every [`EventStore`] passes.
//!
//! Written once, generic over the store, and run on [`InMemoryStore`](crate::InMemoryStore)
//! and on the PostgreSQL store. It checks the guarantees of the crate docs for any store:
//! stream versions and reads, optimistic concurrency under many writers, atomic appends,
//! idempotency keys, the input a store refuses (payloads over the limit, metadata it cannot
//! keep), hostile input stored byte-exact, the global log, event ids, snapshots and the reads
//! for a fold,
//! and the repository's features over the store (its snapshot policy, snapshots on demand).
//!
//! # Running it
//!
//! A store implementation enables this crate's `conformance` feature in its dev-dependencies,
//! with `tokio` and its `macros` and `rt-multi-thread` features, and calls
//! [`store_conformance_tests!`](crate::store_conformance_tests) once in an integration test,
//! giving an expression that makes a fresh, empty store with the default payload limit:
//!
//! ```ignore
//! esrs_core::store_conformance_tests!(async { esrs_core::InMemoryStore::new() });
//! ```
//!
//! The macro generates one `#[tokio::test]` per check, named after the check (a test filter
//! such as `cargo test snapshots` picks checks by name). It runs every check of this module:
//! its list is generated from the checks' definitions, and its docs list them.
//!
//! Each check is also a public function, for stores that need their own test set-up or more
//! load (the PostgreSQL store runs [`concurrent_writers_many_streams`] a second time, over 100
//! streams). [`event`], [`payload`] and [`unique_stream`] make the events and stream ids of
//! such tests.

#![allow(clippy::missing_panics_doc)]
// A `pub` function of a guarantee module is public only through the re-exports that
// `collect!` generates from the checks' definitions, so a check written outside `checks!`
// (or in a module left out of `suite!`) is dead code and an unreachable `pub` item: the build
// fails rather than the suite skipping the check.
#![deny(dead_code, unreachable_pub)]

// How the suite is assembled, in three steps, all at compile time:
//
// 1. Each guarantee module writes its checks inside `checks! { … }`, each a documented
//    `pub async fn name<S: EventStore>(store: S, …)`, with `#[suite_args(…)]` before the `fn`
//    giving the arguments the suite passes after the store, if the check takes more than the
//    store. `checks!` emits the functions unchanged and defines the module's `list!`, which
//    hands the module's name and its checks to a callback macro.
// 2. `suite!` declares the guarantee modules and starts `collect!`, which calls each module's
//    `list!` in turn, gathering the checks of all modules.
// 3. With every module gathered, `collect!` re-exports each check from this module and defines
//    `store_conformance_tests!`, one test per check.
//
// A generated `macro_rules!` takes arguments of its own, which needs a `$` that the macro
// defining it does not expand; `checks!` and `collect!` pass one in as `$d`.
//
// rustfmt leaves the inside of a macro call in braces as it is, so `cargo fmt` does not format
// the checks; they are laid out as rustfmt lays out code 96 columns wide.

/// Emits a guarantee module's checks and defines the module's `list!` (see above).
macro_rules! checks {
    (@with($d:tt)
        $(
            $(#[doc = $doc:literal])*
            $(#[suite_args($($arg:expr),* $(,)?)])?
            pub async fn $name:ident<$S:ident: $bound:path>($($params:tt)*) $body:block
        )*
    ) => {
        $(
            $(#[doc = $doc])*
            pub async fn $name<$S: $bound>($($params)*) $body
        )*

        /// Calls `$callback! { $rest… $module [$check($args…)…] }` with this module's checks.
        macro_rules! list {
            ($d callback:ident; $d module:ident; $d ($d rest:tt)*) => {
                $d callback! {
                    $d ($d rest)*
                    $d module [$( $name ($($($arg),*)?) )*]
                }
            };
        }
        pub(super) use list;
    };
    ($($checks:tt)*) => {
        checks! { @with($) $($checks)* }
    };
}

/// Gathers the checks of the modules in `[…]`, one module at a time, then re-exports them and
/// defines `store_conformance_tests!`.
macro_rules! collect {
    ([$next:ident $($modules:ident)*] $($gathered:tt)*) => {
        $next::list! { collect; $next; [$($modules)*] $($gathered)* }
    };
    ([] $($module:ident [$($check:ident ($($arg:expr),*))*])*) => {
        $($(pub use self::$module::$check;)*)*
        collect! { @with($) $($module [$($check ($($arg),*))*])* }
    };
    (@with($d:tt) $($module:ident [$($check:ident ($($arg:expr),*))*])*) => {
        /// Generates one `#[tokio::test]` per conformance check, each on a fresh store made by
        /// `$make` (an expression evaluating to a future of the store). The calling crate needs
        /// `tokio` with the `macros` and `rt-multi-thread` features.
        ///
        /// ```ignore
        /// esrs_core::store_conformance_tests!(async { esrs_core::InMemoryStore::new() });
        /// ```
        ///
        /// Each test is named after its check and runs it on a multi-threaded runtime with 4
        /// workers. The tests, by guarantee module, each with the call it makes:
        ///
        $($(
            #[doc = concat!(
                "- ", stringify!($module), ": [`", stringify!($check),
                "`](crate::conformance::", stringify!($check), ")`(store",
                $(", ", stringify!($arg),)* ")`",
            )]
        )*)*
        #[macro_export]
        macro_rules! store_conformance_tests {
            ($d make:expr) => {
                $($(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                    async fn $check() {
                        $d crate::conformance::$check($d make.await $(, $arg)*).await;
                    }
                )*)*
            };
        }
    };
}

/// Declares the guarantee modules and generates the suite from their checks.
macro_rules! suite {
    ($($module:ident),* $(,)?) => {
        $(mod $module;)*
        collect! { [$($module)*] }
    };
}

suite! {
    versions,
    concurrency,
    atomicity,
    idempotency,
    limits,
    round_trips,
    global_log,
    filtered_log,
    snapshot,
    fold_reads,
    identity,
    repository,
}

use futures_util::TryStreamExt;

use crate::store::{NewEvent, Payload};
use crate::{EventStore, Position, RecordedEvent, StreamId, Version};

/// A JSON payload from a `serde_json::Value`.
pub fn payload(value: serde_json::Value) -> Payload {
    serde_json::value::to_raw_value(&value).expect("a JSON value encodes")
}

/// A test event named `name` with payload `{"n": n}`.
pub fn event(name: &'static str, n: u64) -> NewEvent {
    NewEvent::new(name, 1, payload(serde_json::json!({ "n": n })))
}

/// A stream id unique to this run.
pub fn unique_stream(prefix: &str) -> StreamId {
    StreamId::new(format!("{prefix}-{}", uuid::Uuid::new_v4())).expect("valid stream id")
}

async fn read_stream<S: EventStore>(store: &S, stream: &StreamId) -> Vec<RecordedEvent> {
    store
        .read_stream(stream, 1, Version::MAX)
        .try_collect()
        .await
        .expect("read_stream succeeds")
}

async fn read_all<S: EventStore>(store: &S, after: Position) -> Vec<RecordedEvent> {
    store
        .read_all(after)
        .try_collect()
        .await
        .expect("read_all succeeds")
}

/// The global log after `after`, read on from where it stopped until `count` of the events
/// `ours` picks are in it (a store may hold events back while older writes, of anyone, are
/// still in flight), or for 30 s at most.
async fn follow_log<S: EventStore>(
    store: &S,
    after: Position,
    count: usize,
    ours: impl Fn(&RecordedEvent) -> bool,
) -> Vec<RecordedEvent> {
    let mut log: Vec<RecordedEvent> = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let from = log.last().map_or(after, |e| e.position);
        log.extend(read_all(store, from).await);
        if log.iter().filter(|e| ours(e)).count() >= count || std::time::Instant::now() > deadline {
            return log;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn n_of(e: &RecordedEvent) -> u64 {
    let v: serde_json::Value = serde_json::from_str(e.payload()).expect("payload is JSON");
    v["n"].as_u64().expect("payload has n")
}
