//! The conformance suite every [`EventStore`] passes.
//!
//! Written once, generic over the store, and run on [`InMemoryStore`](crate::InMemoryStore)
//! and on the PostgreSQL store. A store implementation runs it with
//! [`store_conformance_tests!`](crate::store_conformance_tests), giving an expression that
//! makes a fresh, empty store with the default payload limit:
//!
//! ```ignore
//! esrs_core::store_conformance_tests!(async { esrs_core::InMemoryStore::new() });
//! ```
//!
//! Each check is also a public function, for stores that need their own test set-up.

#![allow(missing_docs, clippy::missing_panics_doc)]

mod atomicity;
mod concurrency;
mod fold_reads;
mod global_log;
mod idempotency;
mod limits;
mod round_trips;
mod snapshot;
mod versions;

pub use self::atomicity::batch_atomicity;
pub use self::concurrency::{
    concurrent_writers_many_streams, concurrent_writers_one_winner_per_version,
    expected_version_conflicts,
};
pub use self::fold_reads::fold_reads_match_full_reads;
pub use self::global_log::{global_log_order, wait_for_events_wakes};
pub use self::idempotency::{
    idempotency_key_with_another_request, idempotency_keys, idempotency_under_concurrent_retries,
};
pub use self::limits::{invalid_metadata_refused, oversized_payload_refused};
pub use self::round_trips::hostile_input_round_trips;
pub use self::snapshot::{snapshots, snapshots_kept_per_key};
pub use self::versions::{
    append_and_read_in_order, empty_append, long_stream_reads_completely, read_stream_ranges,
};

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

fn n_of(e: &RecordedEvent) -> u64 {
    let v: serde_json::Value = serde_json::from_str(e.payload()).expect("payload is JSON");
    v["n"].as_u64().expect("payload has n")
}

/// Generates one `#[tokio::test]` per conformance check, each on a fresh store made by
/// `$make` (an expression evaluating to a future of the store). The calling crate needs
/// `tokio` with the `macros` and `rt-multi-thread` features.
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::store_conformance_tests!(@tests $make;
            append_and_read_in_order,
            read_stream_ranges,
            long_stream_reads_completely,
            expected_version_conflicts,
            concurrent_writers_one_winner_per_version,
            idempotency_keys,
            idempotency_under_concurrent_retries,
            idempotency_key_with_another_request,
            invalid_metadata_refused,
            batch_atomicity,
            oversized_payload_refused,
            global_log_order,
            snapshots,
            fold_reads_match_full_reads,
            hostile_input_round_trips,
            empty_append,
            wait_for_events_wakes,
            snapshots_kept_per_key,
        );
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn concurrent_writers_many_streams() {
            $crate::conformance::concurrent_writers_many_streams($make.await, 20, 25).await;
        }
    };
    (@tests $make:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                $crate::conformance::$check($make.await).await;
            }
        )*
    };
}
