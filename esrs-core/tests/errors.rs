//! How errors show themselves: each layer's `Display` says what failed at that layer, its
//! cause is its `source()`, and `ErrorChain` shows the whole chain with each cause once.

use std::error::Error as StdError;

use esrs_core::error::{EncodeError, ErrorChain, MetadataError, StreamIdError};
use esrs_core::prelude::*;
use esrs_core::projection::{CheckpointError, ProjectionError};
use esrs_core::{DecodeError, Error, Position};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Added {
    by: u64,
}

/// A payload whose `by` is a string: `Added` cannot be decoded from it.
const MALFORMED: &str = r#"{"by":"three"}"#;

/// What serde_json says about [`MALFORMED`].
fn json_error() -> serde_json::Error {
    serde_json::from_str::<Added>(MALFORMED).unwrap_err()
}

/// Each error of the chain, outermost first.
fn layers<'a>(error: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    let mut layers = vec![error];
    let mut next = error.source();
    while let Some(source) = next {
        layers.push(source);
        next = source.source();
    }
    layers
}

/// Checks the rule on every layer of `error`: no layer's text contains its cause's, and the
/// chain shows every layer's text exactly once, in order.
fn assert_each_layer_once(error: &(dyn StdError + 'static)) -> String {
    let texts: Vec<String> = layers(error).iter().map(ToString::to_string).collect();
    for pair in texts.windows(2) {
        assert!(
            !pair[0].contains(&pair[1]),
            "`{}` prints its cause `{}`, which is also its source()",
            pair[0],
            pair[1]
        );
    }
    let chain = ErrorChain::new(error).to_string();
    assert_eq!(chain, texts.join(": "));
    for text in &texts {
        assert_eq!(chain.matches(text.as_str()).count(), 1, "{text} in {chain}");
    }
    chain
}

#[test]
fn a_decode_error_shows_each_layer_once() {
    let malformed = DecodeError::parse::<Added>("Added", 1, MALFORMED).unwrap_err();
    let error = Error::Decode {
        stream: StreamId::new("counter-7").unwrap(),
        version: 3,
        source: malformed,
    };
    let json = json_error().to_string();

    // Each layer says what failed at its own layer, without its cause.
    assert_eq!(
        error.to_string(),
        "cannot decode event at version 3 of stream `counter-7`"
    );
    let decode = error
        .source()
        .and_then(|e| e.downcast_ref::<DecodeError>())
        .expect("the decode error is the source");
    assert!(
        matches!(decode, DecodeError::Malformed { .. }),
        "{decode:?}"
    );
    assert_eq!(
        decode.to_string(),
        "event `Added` version 1 has a malformed payload"
    );
    // The chain goes on to the JSON decoder's own error, and ends there.
    let root = decode
        .source()
        .and_then(|e| e.downcast_ref::<serde_json::Error>())
        .expect("the JSON error is the source");
    assert_eq!(root.to_string(), json);
    assert!(root.source().is_none());

    // The chain shows each layer once.
    let chain = assert_each_layer_once(&error);
    assert_eq!(
        chain,
        format!(
            "cannot decode event at version 3 of stream `counter-7`: event `Added` version 1 \
             has a malformed payload: {json}"
        )
    );
}

#[test]
fn a_projection_error_shows_each_layer_once() {
    let error = ProjectionError::Decode {
        projection: "totals".into(),
        position: Position::new(12, 0),
        stream: StreamId::new("counter-7").unwrap(),
        version: 3,
        source: DecodeError::parse::<Added>("Added", 1, MALFORMED).unwrap_err(),
    };
    assert_eq!(
        error.to_string(),
        format!(
            "projection `totals` cannot decode event {} (version 3 of stream `counter-7`)",
            Position::new(12, 0)
        )
    );
    assert_eq!(layers(&error).len(), 3);
    assert_each_layer_once(&error);
}

/// Every error of esrs-core that has a cause, built around a cause of its own text.
#[test]
fn no_error_prints_its_cause() {
    let cause = || -> esrs_core::BoxError { "the cause".into() };
    let stream = || StreamId::new("s").unwrap();
    let decode = || DecodeError::parse::<Added>("Added", 1, MALFORMED).unwrap_err();
    let encode = || EncodeError::Json {
        name: "Added",
        source: json_error(),
    };
    let errors: Vec<Box<dyn StdError>> = vec![
        Box::new(Error::InvalidStreamId(StreamIdError::Empty)),
        Box::new(Error::InvalidMetadata {
            stream: stream(),
            source: MetadataError::TooLarge { size: 9, limit: 8 },
        }),
        Box::new(Error::Decode {
            stream: stream(),
            version: 1,
            source: decode(),
        }),
        Box::new(Error::Encode(encode())),
        Box::new(Error::Retryable { source: cause() }),
        Box::new(Error::Unavailable { source: cause() }),
        Box::new(Error::Backend { source: cause() }),
        Box::new(decode()),
        Box::new(DecodeError::MalformedRow {
            column: "metadata",
            source: cause(),
        }),
        Box::new(encode()),
        Box::new(CheckpointError::Backend(cause())),
        Box::new(ProjectionError::Handler {
            projection: "p".into(),
            position: Position::new(1, 0),
            stream: stream(),
            version: 1,
            source: cause(),
        }),
        Box::new(ProjectionError::Decode {
            projection: "p".into(),
            position: Position::new(1, 0),
            stream: stream(),
            version: 1,
            source: decode(),
        }),
        Box::new(ProjectionError::Reset {
            projection: "p".into(),
            source: cause(),
        }),
        Box::new(ProjectionError::EventStore {
            projection: "p".into(),
            source: Error::Unavailable { source: cause() },
        }),
        Box::new(ProjectionError::Checkpoint {
            projection: "p".into(),
            source: CheckpointError::Backend(cause()),
        }),
        Box::new(ExecuteError::<std::convert::Infallible>::Failed(
            Error::Retryable { source: cause() },
        )),
    ];
    for error in &errors {
        assert!(error.source().is_some(), "{error:?} has a cause");
        assert_each_layer_once(&**error);
    }
}

/// A refused command's own error is no source: the rejection shows it.
#[test]
fn a_rejection_shows_the_domain_error() {
    let error = ExecuteError::Rejected("the cart is empty");
    assert_eq!(error.to_string(), "command rejected: the cart is empty");
    assert!(error.source().is_none());
}
