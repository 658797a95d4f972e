//! The sharded replay: W4's log projected by 1, 2, 4 or 8 shards into a read model whose
//! handler waits 50 µs per event (simulated I/O: a call to another service, a write to a
//! remote store), so that one shard is bound by the wait, not by the CPU.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use esrs_core::projection::{Shard, ShardedRunner};
use esrs_core::{BoxError, StreamId};
use esrs_postgres::{PgCheckpoints, PgStore, PgTransaction};

use crate::domain::{Account, AccountEvent};
use crate::measure::{Latencies, Report};
use crate::workloads::{done, ensure};

/// The simulated I/O of one event.
pub(crate) const IO_PER_EVENT: Duration = Duration::from_micros(50);

/// W4's read model (the balance of every account of the shard), each event waited for as
/// if it were written to another system. The waits are owed and paid to the timer when at
/// least a millisecond is owed (tokio's timer resolution), so a shard spends
/// `IO_PER_EVENT` per event on average however coarse the timer is.
pub(crate) struct SlowBalances {
    balances: HashMap<StreamId, Account>,
    handled: Arc<AtomicU64>,
    /// When this shard's simulated I/O began, and how many events it has owed since.
    clock: Option<(Instant, u32)>,
}

impl esrs_core::Projection<PgTransaction> for SlowBalances {
    type Event = AccountEvent;

    fn name(&self) -> &str {
        "slow-balances"
    }

    async fn handle(
        &mut self,
        _tx: &mut PgTransaction,
        event: AccountEvent,
        envelope: &esrs_core::RecordedEvent,
    ) -> Result<(), BoxError> {
        let (since, owed) = self.clock.get_or_insert_with(|| (Instant::now(), 0));
        *owed += 1;
        let due = *since + IO_PER_EVENT * *owed;
        if due > Instant::now() + Duration::from_millis(1) {
            tokio::time::sleep_until(due.into()).await;
        }
        self.balances
            .entry(envelope.stream.clone())
            .or_default()
            .on(&event);
        self.handled.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Catches `shards` shards up with the log, side by side on the runtime, with their
/// checkpoints in PostgreSQL; every event is handled once.
pub(crate) async fn replay(store: PgStore, shards: u32, expected: u64) -> Result<Report, BoxError> {
    let handled = Arc::new(AtomicU64::new(0));
    let checkpoints = PgCheckpoints::new(&store);
    let counter = handled.clone();
    let runner = ShardedRunner::new(store, checkpoints, shards, move |_: Shard| SlowBalances {
        balances: HashMap::new(),
        handled: counter.clone(),
        clock: None,
    });
    let started = Instant::now();
    runner.catch_up().await?;
    let seconds = started.elapsed().as_secs_f64();
    let count = handled.load(Ordering::Relaxed);
    ensure(
        count == expected,
        format!("projected {count} events, expected {expected}"),
    )?;
    Ok(done(
        "W4 sharded",
        &format!("esrs, {shards} shard{}", if shards == 1 { "" } else { "s" }),
        "event",
        count,
        seconds,
        Latencies::default(),
    ))
}
