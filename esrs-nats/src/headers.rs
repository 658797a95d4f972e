//! The headers the relay puts on every message, and the envelope read back from them.

use async_nats::HeaderMap;
use async_nats::header::NATS_MESSAGE_ID;
use esrs_core::{Metadata, Position, RecordedEvent, StreamId};

/// The event's id ([`RecordedEvent::id`]).
pub const EVENT_ID: &str = "Esrs-Event-Id";
/// The event's stream id, as stored.
pub const STREAM: &str = "Esrs-Stream";
/// The event's version in its stream (1 for the first event).
pub const STREAM_VERSION: &str = "Esrs-Stream-Version";
/// The event's stored name.
pub const NAME: &str = "Esrs-Name";
/// The schema version of the payload.
pub const SCHEMA_VERSION: &str = "Esrs-Schema-Version";
/// The event's position in the store's global log, `transaction_id:sequence`.
pub const POSITION: &str = "Esrs-Position";
/// The metadata as JSON; absent when the event has none.
pub const METADATA: &str = "Esrs-Metadata";
/// When the store recorded the event, RFC 3339.
pub const RECORDED_AT: &str = "Esrs-Recorded-At";

/// The `Nats-Msg-Id` of an event: `<stream id>/<version>`, its identity in the store, so
/// that JetStream drops a re-send within its duplicate window.
pub fn message_id(record: &RecordedEvent) -> String {
    format!("{}/{}", record.stream, record.version)
}

/// Why a JetStream message could not be read back as a recorded event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// The message has no such header: it was not published by the relay.
    #[error("the message has no `{header}` header")]
    MissingHeader {
        /// The header.
        header: &'static str,
    },
    /// A header's value does not parse.
    #[error("the message's `{header}` header does not parse: {value:?}")]
    InvalidHeader {
        /// The header.
        header: &'static str,
        /// Its value.
        value: String,
    },
    /// The payload is not UTF-8 text.
    #[error("the message's payload is not UTF-8")]
    PayloadNotUtf8,
}

/// The headers of `record`'s message, `Nats-Msg-Id` included.
pub(crate) fn encode(record: &RecordedEvent) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(NATS_MESSAGE_ID, message_id(record));
    headers.insert(EVENT_ID, record.id.to_string());
    headers.insert(STREAM, record.stream.as_str());
    headers.insert(STREAM_VERSION, record.version.to_string());
    headers.insert(NAME, record.name.as_str());
    headers.insert(SCHEMA_VERSION, record.schema_version.to_string());
    headers.insert(POSITION, record.position.to_string());
    if !record.metadata.is_empty() {
        // serde_json escapes every control character: the value is one line.
        if let Ok(json) = serde_json::to_string(&record.metadata) {
            headers.insert(METADATA, json);
        }
    }
    headers.insert(
        RECORDED_AT,
        record
            .recorded_at
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
    );
    headers
}

fn header<'a>(headers: &'a HeaderMap, header: &'static str) -> Result<&'a str, MessageError> {
    headers
        .get(header)
        .map(|v| v.as_str())
        .ok_or(MessageError::MissingHeader { header })
}

fn parsed<T: std::str::FromStr>(
    headers: &HeaderMap,
    name: &'static str,
) -> Result<T, MessageError> {
    let value = header(headers, name)?;
    value.parse().map_err(|_| MessageError::InvalidHeader {
        header: name,
        value: value.to_owned(),
    })
}

fn invalid(header: &'static str, value: &str) -> MessageError {
    MessageError::InvalidHeader {
        header,
        value: value.to_owned(),
    }
}

/// Reads back the recorded event a relay message carries: the envelope from its headers,
/// the payload from its body.
pub fn decode(headers: Option<&HeaderMap>, payload: &[u8]) -> Result<RecordedEvent, MessageError> {
    let empty = HeaderMap::new();
    let headers = headers.unwrap_or(&empty);
    let stream_text = header(headers, STREAM)?;
    let stream = StreamId::new(stream_text).map_err(|_| invalid(STREAM, stream_text))?;
    let position_text = header(headers, POSITION)?;
    let position = position_text
        .split_once(':')
        .and_then(|(t, s)| Some(Position::new(t.parse().ok()?, s.parse().ok()?)))
        .ok_or_else(|| invalid(POSITION, position_text))?;
    let metadata = match headers.get(METADATA) {
        None => Metadata::default(),
        Some(value) => {
            serde_json::from_str(value.as_str()).map_err(|_| invalid(METADATA, value.as_str()))?
        }
    };
    let recorded_text = header(headers, RECORDED_AT)?;
    let recorded_at = chrono::DateTime::parse_from_rfc3339(recorded_text)
        .map_err(|_| invalid(RECORDED_AT, recorded_text))?
        .with_timezone(&chrono::Utc);
    let payload = std::str::from_utf8(payload).map_err(|_| MessageError::PayloadNotUtf8)?;
    // Messages published before events had ids carry none: the nil id.
    let id = match headers.get(EVENT_ID) {
        None => esrs_core::uuid::Uuid::nil(),
        Some(value) => value
            .as_str()
            .parse()
            .map_err(|_| invalid(EVENT_ID, value.as_str()))?,
    };
    Ok(RecordedEvent::new(
        position,
        stream,
        parsed(headers, STREAM_VERSION)?,
        header(headers, NAME)?.to_owned(),
        parsed(headers, SCHEMA_VERSION)?,
        payload,
        metadata,
        recorded_at,
    )
    .with_id(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_reads_back() {
        let record = RecordedEvent::new(
            Position::new(7, 42),
            StreamId::new("cart-1.2 x").unwrap(),
            3,
            "ItemAdded".to_owned(),
            2,
            r#"{"item":"book"}"#,
            Metadata::new().with_actor("alice").with("note", "a\nb"),
            chrono::Utc::now(),
        )
        .with_id(esrs_core::uuid::Uuid::new_v4());
        let headers = encode(&record);
        assert_eq!(
            headers.get(NATS_MESSAGE_ID).unwrap().as_str(),
            "cart-1.2 x/3"
        );
        let back = decode(Some(&headers), record.payload().as_bytes()).unwrap();
        assert_eq!(back.id, record.id);
        assert_eq!(back.position, record.position);
        assert_eq!(back.stream, record.stream);
        assert_eq!(back.version, 3);
        assert_eq!(back.name, "ItemAdded");
        assert_eq!(back.schema_version, 2);
        assert_eq!(back.payload(), record.payload());
        assert_eq!(back.metadata, record.metadata);
        assert_eq!(back.recorded_at, record.recorded_at);
    }

    #[test]
    fn a_foreign_message_is_refused() {
        assert!(matches!(
            decode(None, b"{}"),
            Err(MessageError::MissingHeader { header: STREAM })
        ));
    }
}
