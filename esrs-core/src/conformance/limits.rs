//! Input a store refuses, writing nothing: payloads over the limit and metadata it cannot keep.

use super::{event, payload, read_stream, unique_stream};
use crate::store::{AppendRequest, NewEvent};
use crate::{Error, EventStore, ExpectedVersion};

checks! {
    /// Payloads over the limit are refused with an error that says what to do; payloads at the
    /// limit are stored.
    pub async fn oversized_payload_refused<S: EventStore>(store: S) {
        let stream = unique_stream("size");
        // `{"b":"…"}` is 8 bytes around the text.
        let exact = "y".repeat(crate::store::DEFAULT_MAX_PAYLOAD_BYTES - 8);
        store
            .append(AppendRequest::new(
                stream.clone(),
                ExpectedVersion::Any,
                vec![NewEvent::new(
                    "AtLimit",
                    1,
                    payload(serde_json::json!({ "b": exact })),
                )],
            ))
            .await
            .expect("a payload at the limit is stored");
        let over = "y".repeat(crate::store::DEFAULT_MAX_PAYLOAD_BYTES - 7);
        let err = store
            .append(AppendRequest::new(
                stream.clone(),
                ExpectedVersion::Any,
                vec![NewEvent::new(
                    "OverLimit",
                    1,
                    payload(serde_json::json!({ "b": over })),
                )],
            ))
            .await
            .expect_err("one byte over is refused");
        match &err {
            Error::PayloadTooLarge { size, limit, .. } => {
                assert_eq!(
                    (*size, *limit),
                    (
                        crate::store::DEFAULT_MAX_PAYLOAD_BYTES + 1,
                        crate::store::DEFAULT_MAX_PAYLOAD_BYTES
                    )
                );
            }
            other => panic!("expected PayloadTooLarge, got {other:?}"),
        }
        assert!(
            err.to_string().contains("store the blob elsewhere"),
            "{}",
            crate::error::ErrorChain::new(&err)
        );
        assert_eq!(store.stream_version(&stream).await.expect("version"), 1);
    }

    /// Metadata that a store cannot keep (a NUL character anywhere, or over
    /// [`Metadata::MAX_BYTES`](crate::Metadata::MAX_BYTES)) is refused with
    /// [`Error::InvalidMetadata`] by every store, and nothing is written.
    pub async fn invalid_metadata_refused<S: EventStore>(store: S) {
        let stream = unique_stream("metadata");
        let refused = [
            crate::Metadata::new().with_actor("a\0b"),
            crate::Metadata::new().with("note", "nul \0 inside"),
            crate::Metadata::new().with("nested", serde_json::json!({ "list": ["ok", "\0"] })),
            crate::Metadata::new().with("key\0", 1),
            crate::Metadata::new().with("blob", "x".repeat(crate::Metadata::MAX_BYTES)),
        ];
        for metadata in refused {
            let err = store
                .append(
                    AppendRequest::new(stream.clone(), ExpectedVersion::Any, vec![event("A", 1)])
                        .metadata(metadata.clone()),
                )
                .await
                .expect_err("invalid metadata is refused");
            assert!(
                matches!(&err, Error::InvalidMetadata { stream: s, .. } if *s == stream),
                "expected InvalidMetadata for {metadata:?}, got {err:?}"
            );
        }
        assert!(read_stream(&store, &stream).await.is_empty());
        // Other control characters are kept as they are.
        let odd = crate::Metadata::new()
            .with_actor("tab\there, line\nbreak, \u{7f}")
            .with("note", "\u{1}");
        store
            .append(
                AppendRequest::new(stream.clone(), ExpectedVersion::Any, vec![event("A", 1)])
                    .metadata(odd.clone()),
            )
            .await
            .expect("control characters other than NUL are kept");
        assert_eq!(read_stream(&store, &stream).await[0].metadata, odd);
    }
}
