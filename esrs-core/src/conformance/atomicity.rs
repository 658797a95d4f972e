//! Appends are all or nothing.

use super::{event, payload, read_stream, unique_stream};
use crate::store::{AppendRequest, NewEvent};
use crate::{Error, EventStore, ExpectedVersion};

checks! {
    /// A batch is all or nothing: an oversized event or a conflict anywhere in it writes
    /// nothing.
    pub async fn batch_atomicity<S: EventStore>(store: S) {
        let stream = unique_stream("batch");
        let big = "x".repeat(crate::store::DEFAULT_MAX_PAYLOAD_BYTES + 1);
        let batch = vec![
            event("A", 1),
            event("B", 2),
            NewEvent::new("Huge", 1, payload(serde_json::json!({ "blob": big }))),
            event("D", 4),
        ];
        let err = store
            .append(AppendRequest::new(
                stream.clone(),
                ExpectedVersion::Any,
                batch,
            ))
            .await
            .expect_err("an oversized event is refused");
        assert!(
            matches!(err, Error::PayloadTooLarge { name: "Huge", .. }),
            "got {err:?}"
        );
        assert!(
            read_stream(&store, &stream).await.is_empty(),
            "nothing of the batch is written"
        );

        store
            .append(AppendRequest::new(
                stream.clone(),
                ExpectedVersion::NoStream,
                vec![event("A", 1)],
            ))
            .await
            .expect("append succeeds");
        let err = store
            .append(AppendRequest::new(
                stream.clone(),
                ExpectedVersion::NoStream,
                (2..=100).map(|n| event("X", n)).collect(),
            ))
            .await
            .expect_err("a conflicting batch is refused");
        assert!(err.as_conflict().is_some());
        let batch: Vec<_> = (2..=1000).map(|n| event("Y", n)).collect();
        let outcome = store
            .append(AppendRequest::new(
                stream.clone(),
                ExpectedVersion::Exact(1),
                batch,
            ))
            .await
            .expect("a large batch appends");
        assert_eq!((outcome.first_version, outcome.last_version), (2, 1000));
        let events = read_stream(&store, &stream).await;
        assert_eq!(events.len(), 1000);
        assert!(events.iter().skip(1).all(|e| e.name == "Y"));
    }
}
