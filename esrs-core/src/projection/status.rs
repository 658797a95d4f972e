//! What a runner reports: its phase, checkpoint, the store's head and the lag.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::position::Position;

/// What a runner is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Phase {
    /// Not started, or done with a [`ProjectionRunner::catch_up`](super::ProjectionRunner::catch_up) or
    /// [`ProjectionRunner::rebuild`](super::ProjectionRunner::rebuild).
    Idle,
    /// Waiting for another runner of the projection to stop.
    WaitingForLock,
    /// Reading events that are already in the log.
    CatchingUp,
    /// Caught up with the log and waiting for new events.
    Live,
    /// Resetting the read model and its checkpoint.
    Rebuilding,
    /// Waiting before retrying a failed batch.
    Retrying {
        /// The retry about to be made, from 1.
        attempt: u32,
        /// The failure, with its causes (see [`ErrorChain`](crate::error::ErrorChain)).
        error: String,
    },
    /// Stopped on request.
    Stopped,
    /// Stopped by an error.
    Failed {
        /// The failure, with its causes (see [`ErrorChain`](crate::error::ErrorChain)).
        error: String,
    },
}

/// A runner's progress and lag.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ProjectionStatus {
    /// The projection.
    pub projection: String,
    /// What the runner is doing.
    pub phase: Phase,
    /// The last committed checkpoint: every event up to it has been handled.
    pub checkpoint: Position,
    /// When the event at the checkpoint was recorded, if the runner has committed one.
    pub last_recorded_at: Option<DateTime<Utc>>,
    /// The head of the store's log when the runner last asked, if the store tells
    /// ([`EventStore::head_position`](crate::EventStore::head_position)). A runner asks
    /// after the first batch it commits in a pass of the log, then at most every 100 ms
    /// while it catches up (sooner when its checkpoint reaches the head it knows), and
    /// after the pass's last batch.
    pub head: Option<Position>,
    /// Events handled since the runner was made.
    pub handled: u64,
    /// Events read but not handled since the runner was made: read from the store, then
    /// refused by [`Projection::handles`](crate::Projection::handles). The events left out by the projection's
    /// [`filter`](crate::Projection::filter) are not read, and not counted.
    pub skipped: u64,
    /// Rebuilds made since the runner was made.
    pub rebuilds: u64,
}

impl ProjectionStatus {
    pub(super) fn new(projection: String) -> Self {
        Self {
            projection,
            phase: Phase::Idle,
            checkpoint: Position::START,
            last_recorded_at: None,
            head: None,
            handled: 0,
            skipped: 0,
            rebuilds: 0,
        }
    }

    /// Whether the runner has handled every event that was readable when it last looked.
    pub fn is_caught_up(&self) -> bool {
        self.phase == Phase::Live
    }

    /// How far behind the head of the log the checkpoint is, in global sequence numbers:
    /// an estimate of the events left to read (sequence numbers may have gaps), or `None`
    /// if the head is unknown. Zero when caught up.
    pub fn events_behind(&self) -> Option<u64> {
        if self.is_caught_up() {
            return Some(0);
        }
        self.head
            .map(|head| head.sequence.saturating_sub(self.checkpoint.sequence))
    }

    /// How far behind the present the read model is: zero when caught up, otherwise the
    /// age of the last event committed (an upper bound of the lag in time).
    pub fn time_behind(&self) -> Duration {
        if self.is_caught_up() || self.head.is_some_and(|h| h <= self.checkpoint) {
            return Duration::ZERO;
        }
        self.last_recorded_at
            .and_then(|at| (Utc::now() - at).to_std().ok())
            .unwrap_or(Duration::ZERO)
    }
}
