//! Hostile input (quotes, SQL, unicode, the maximum length) is stored and read back byte-exact.

use super::{payload, read_stream};
use crate::store::{AppendRequest, NewEvent};
use crate::{EventStore, ExpectedVersion, Metadata, StreamId};

checks! {
    /// Stream ids, names and metadata with quotes, backslashes, SQL, unicode and the maximum
    /// length are stored and read back byte-exact.
    pub async fn hostile_input_round_trips<S: EventStore>(store: S) {
        let odd = [
            "quote ' double \" back \\ slash".to_owned(),
            "'; DROP TABLE events; --".to_owned(),
            "ünïcødé 🦀 日本語 \u{200b}".to_owned(),
            format!(
                "{}{}",
                uuid::Uuid::new_v4(),
                "é".repeat((crate::StreamId::MAX_LEN - 36) / 2)
            ),
        ];
        for (i, text) in odd.iter().enumerate() {
            let stream = if i == 3 {
                StreamId::new(text).expect("max-length id")
            } else {
                StreamId::new(format!("{text}-{}", uuid::Uuid::new_v4())).expect("valid id")
            };
            let metadata = Metadata::new()
                .with_actor(text.clone())
                .with(text.clone(), text.clone());
            let body = payload(serde_json::json!({ "text": text, "n": 1 }));
            store
                .append(
                    AppendRequest::new(
                        stream.clone(),
                        ExpectedVersion::NoStream,
                        vec![NewEvent::new("Odd'\"\\Name", 1, body.clone())],
                    )
                    .metadata(metadata.clone()),
                )
                .await
                .expect("append succeeds");
            let events = read_stream(&store, &stream).await;
            assert_eq!(events.len(), 1);
            assert_eq!(events[0].stream.as_str(), stream.as_str());
            assert_eq!(events[0].name, "Odd'\"\\Name");
            assert_eq!(events[0].metadata, metadata);
            let back: serde_json::Value = serde_json::from_str(events[0].payload()).expect("JSON");
            assert_eq!(back["text"].as_str(), Some(text.as_str()));
        }
    }
}
