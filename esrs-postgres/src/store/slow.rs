//! The warning of slow appends: at most one per second per store, with the count of those
//! not logged in between.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use esrs_core::StreamId;

/// The shortest time between two slow-append warnings of one store.
const WARN_EVERY: Duration = Duration::from_secs(1);

/// A store's threshold and what it last warned about.
pub(super) struct SlowAppends {
    threshold: Duration,
    state: Mutex<Warned>,
}

#[derive(Default)]
struct Warned {
    /// When the last warning was logged.
    last: Option<Instant>,
    /// Slow appends not logged since then.
    suppressed: u64,
}

impl SlowAppends {
    /// Warns about appends slower than `threshold`; zero never warns.
    pub(super) fn new(threshold: Duration) -> Self {
        Self {
            threshold,
            state: Mutex::default(),
        }
    }

    pub(super) fn threshold(&self) -> Duration {
        self.threshold
    }

    /// Logs a warning if an append of `events` events to `stream` that took `elapsed` was
    /// slow, unless the store warned less than a second ago. A fast append costs one
    /// comparison.
    pub(super) fn check(&self, stream: &StreamId, events: usize, elapsed: Duration) {
        if self.threshold.is_zero() || elapsed <= self.threshold {
            return;
        }
        let now = Instant::now();
        let suppressed = {
            // The state is two plain values: a panic elsewhere cannot leave it half-written.
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if state
                .last
                .is_some_and(|at| now.duration_since(at) < WARN_EVERY)
            {
                state.suppressed += 1;
                return;
            }
            state.last = Some(now);
            std::mem::take(&mut state.suppressed)
        };
        tracing::warn!(
            stream = %stream,
            events,
            elapsed_ms = elapsed.as_millis() as u64,
            threshold_ms = self.threshold.as_millis() as u64,
            suppressed,
            "slow append: over the threshold; on an SSD this means I/O pressure, lock contention or a saturated pool"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fast_append_or_a_zero_threshold_never_warns_and_slow_ones_are_rate_limited() {
        let stream = StreamId::new("s").unwrap();
        let off = SlowAppends::new(Duration::ZERO);
        off.check(&stream, 1, Duration::from_secs(10));
        assert!(off.state.lock().unwrap().last.is_none());

        let slow = SlowAppends::new(Duration::from_millis(50));
        slow.check(&stream, 1, Duration::from_millis(50));
        assert!(
            slow.state.lock().unwrap().last.is_none(),
            "at the threshold is not over it"
        );
        slow.check(&stream, 1, Duration::from_millis(51));
        let first = slow.state.lock().unwrap().last;
        assert!(first.is_some());
        slow.check(&stream, 1, Duration::from_millis(80));
        slow.check(&stream, 1, Duration::from_millis(90));
        let state = slow.state.lock().unwrap();
        assert_eq!((state.last, state.suppressed), (first, 2));
    }
}
