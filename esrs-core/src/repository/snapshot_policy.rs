//! The snapshot policy: every `A::SNAPSHOT_EVERY` events, a command saves the state it produced.

use crate::aggregate::Aggregate;
use crate::error::ErrorChain;
use crate::metrics::AggregateKeys;
use crate::snapshot::Snapshot;
use crate::store::EventStore;
use crate::stream::{StreamId, Version};

use super::{Loaded, Repository};

impl<A: Aggregate, S: EventStore> Repository<A, S> {
    pub(super) async fn maybe_snapshot(
        &self,
        stream: &StreamId,
        before: Version,
        loaded: &Loaded<A>,
    ) {
        let Some(every) = A::SNAPSHOT_EVERY.filter(|n| *n > 0) else {
            return;
        };
        if before / every == loaded.version / every {
            return;
        }
        let payload = match loaded.state.encode_snapshot() {
            Some(Ok(payload)) => payload,
            Some(Err(error)) => {
                tracing::warn!(aggregate = A::NAME, stream = %stream, error = %ErrorChain::new(&error), "cannot encode a snapshot; continuing without it");
                return;
            }
            None => return,
        };
        let snapshot = Snapshot::new(stream.clone(), loaded.version, A::SNAPSHOT_KEY, payload);
        match self.store.save_snapshot(snapshot).await {
            Ok(()) => AggregateKeys::<A>::snapshot_saved(),
            Err(error) => {
                tracing::warn!(aggregate = A::NAME, stream = %stream, error = %ErrorChain::new(&error), "cannot save a snapshot; continuing without it");
            }
        }
    }
}
