//! What a runner does when a batch fails.

use std::time::Duration;

/// What a runner does when a batch fails: a handler error, an event it handles that does
/// not decode, or a store failure. A failed batch is never skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ErrorPolicy {
    /// Stop the runner with the error. The checkpoint stays before the failed batch.
    #[default]
    Stop,
    /// Retry the batch from the last checkpoint up to `max` times in a row, waiting
    /// `backoff` before the first retry and twice as long before each next one (at most
    /// one minute); then stop with the error. A batch that commits resets the count.
    Retry {
        /// Retries in a row before giving up.
        max: u32,
        /// The wait before the first retry.
        backoff: Duration,
    },
}

impl ErrorPolicy {
    /// The wait before retry number `attempt` (from 1), or `None` to stop.
    pub(super) fn delay(self, attempt: u32) -> Option<Duration> {
        match self {
            Self::Stop => None,
            Self::Retry { max, backoff } if attempt <= max => {
                let factor = 1u32 << (attempt - 1).min(16);
                Some(backoff.saturating_mul(factor).min(Duration::from_secs(60)))
            }
            Self::Retry { .. } => None,
        }
    }
}
