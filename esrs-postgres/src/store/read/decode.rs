//! Decoding the rows of the store's reads: events, fold events, and the column types the
//! store decodes itself.

use chrono::{DateTime, Utc};
use esrs_core::store::{EventName, FoldEvent, Payload};
use esrs_core::{DecodeError, Metadata, Position, RecordedEvent, StreamId, Version};
use serde_json::value::RawValue;
use sqlx::postgres::{PgArgumentBuffer, PgRow, PgTypeInfo, PgValueFormat, PgValueRef};
use sqlx::types::Json;
use sqlx::{Postgres, Row, ValueRef};

use crate::error::to_core;
use crate::store::sql::pg_type::{INT4, INT8, JSON, JSONB, TEXT, TIMESTAMPTZ, UUID, XID8};
use crate::store::sql::{Column, index};

/// A PostgreSQL `xid8`: a transaction id with its epoch, which never wraps around.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Xid8(pub(crate) u64);

impl sqlx::Type<Postgres> for Xid8 {
    fn type_info() -> PgTypeInfo {
        // The built-in type `xid8` has a fixed OID.
        PgTypeInfo::with_oid(sqlx::postgres::types::Oid(5069))
    }
}

impl<'r> sqlx::Decode<'r, Postgres> for Xid8 {
    fn decode(value: PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        match value.format() {
            PgValueFormat::Binary => {
                let bytes: [u8; 8] = value.as_bytes()?.try_into()?;
                Ok(Self(u64::from_be_bytes(bytes)))
            }
            PgValueFormat::Text => Ok(Self(value.as_str()?.parse()?)),
        }
    }
}

impl sqlx::Encode<'_, Postgres> for Xid8 {
    fn encode_by_ref(
        &self,
        buf: &mut PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        buf.extend_from_slice(&self.0.to_be_bytes());
        Ok(sqlx::encode::IsNull::No)
    }
}

/// A stored integer that must be non-negative, as the store's `u64` types.
pub(crate) fn unsigned(value: i64) -> u64 {
    // Versions and sequence numbers are at least 1 by the schema's constraints.
    value.max(0).unsigned_abs()
}

/// A `u64` of the API as a bound parameter; values beyond `i64::MAX` cannot be stored, so
/// they clamp to a bound that behaves the same in every comparison the store makes.
pub(crate) fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A snapshot fingerprint as stored: the same 64 bits, as a `bigint`.
pub(crate) fn fingerprint(value: u64) -> i64 {
    i64::from_ne_bytes(value.to_ne_bytes())
}

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 00:00:00 UTC).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// A `timestamptz` column: in binary, microseconds since PostgreSQL's epoch, converted
/// directly (sqlx's decoder goes through calendar arithmetic, a visible cost per event).
fn timestamp(row: &PgRow, index: usize) -> Result<DateTime<Utc>, sqlx::Error> {
    let value = row.try_get_raw(index)?;
    let decode_error = |source: sqlx::error::BoxDynError| sqlx::Error::ColumnDecode {
        index: format!("{index:?}"),
        source,
    };
    if value.format() != PgValueFormat::Binary {
        return <DateTime<Utc> as sqlx::Decode<Postgres>>::decode(value).map_err(decode_error);
    }
    let bytes: [u8; 8] = value
        .as_bytes()
        .map_err(decode_error)?
        .try_into()
        .map_err(|e: std::array::TryFromSliceError| decode_error(Box::new(e)))?;
    i64::from_be_bytes(bytes)
        .checked_add(PG_EPOCH_MICROS)
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(|| decode_error("a timestamp out of range".into()))
}

/// A `json` column as a [`Payload`]: the text is checked to be JSON (without building a
/// value) and copied once, at its exact size.
pub(crate) fn payload(row: &PgRow, index: usize) -> Result<Payload, sqlx::Error> {
    let decode_error = |source: sqlx::error::BoxDynError| sqlx::Error::ColumnDecode {
        index: format!("{index:?}"),
        source,
    };
    let text =
        <&str as sqlx::Decode<Postgres>>::decode(row.try_get_raw(index)?).map_err(decode_error)?;
    let raw: &RawValue = serde_json::from_str(text).map_err(|e| decode_error(Box::new(e)))?;
    Ok(raw.to_owned())
}

/// A row of `stream` at `version` whose `column` did not decode: a
/// [`DecodeError::MalformedRow`] that names the event, as other decode errors do.
pub(super) fn malformed<'a>(
    stream: &'a StreamId,
    version: Version,
    column: &'static str,
) -> impl FnOnce(sqlx::Error) -> esrs_core::Error + 'a {
    move |error| {
        let source: esrs_core::BoxError = match error {
            sqlx::Error::ColumnDecode { source, .. } | sqlx::Error::Decode(source) => source,
            other => Box::new(other),
        };
        esrs_core::Error::Decode {
            stream: stream.clone(),
            version,
            source: DecodeError::MalformedRow { column, source },
        }
    }
}

/// What the events of one read share instead of each allocating its own copy: the id of
/// the stream of consecutive events, and the stored names decoded so far (a log has few
/// names, and a read meets the same ones row after row).
#[derive(Debug, Default)]
pub(super) struct Shared {
    last_stream: Option<StreamId>,
    names: Vec<EventName>,
    /// The slot the next new name takes once every slot is used.
    next_name: usize,
}

/// The most names a read keeps at once.
const KEPT_NAMES: usize = 16;

impl Shared {
    /// The stream of a row whose stream id is in column `at`, shared with the previous
    /// row's when it is the same stream.
    pub(super) fn stream(&mut self, row: &PgRow, at: usize) -> esrs_core::Result<StreamId> {
        let stream: &str = row.try_get_unchecked(at).map_err(to_core)?;
        Ok(match &self.last_stream {
            Some(last) if last.as_str() == stream => last.clone(),
            _ => {
                let id = StreamId::from_stored(stream);
                self.last_stream = Some(id.clone());
                id
            }
        })
    }

    /// The name `name`, shared with the read's earlier events of that name.
    fn name(&mut self, name: &str) -> EventName {
        if let Some(known) = self.names.iter().find(|known| known.as_str() == name) {
            return known.clone();
        }
        let new = EventName::from(name);
        if self.names.len() < KEPT_NAMES {
            self.names.push(new.clone());
        } else {
            self.names[self.next_name] = new.clone();
            self.next_name = (self.next_name + 1) % KEPT_NAMES;
        }
        new
    }
}

/// An event version as stored (`integer`), which must fit the API's `u32`.
fn stored_event_version(value: i32) -> Result<u32, sqlx::Error> {
    u32::try_from(value).map_err(|e| sqlx::Error::ColumnDecode {
        index: "event_version".into(),
        source: Box::new(e),
    })
}

/// The columns [`decode_event`] reads, in order from its `base`.
pub(crate) const EVENT_COLUMNS: &[Column] = &[
    Column::new("sequence", INT8),
    Column::new("transaction_id", XID8),
    Column::new("version", INT8),
    Column::new("name", TEXT),
    Column::new("event_version", INT4),
    Column::new("payload", JSON),
    Column::new("metadata", JSONB),
    Column::new("recorded_at", TIMESTAMPTZ),
    Column::new("event_id", UUID),
];

/// Where [`decode_event`] reads each part of an event, from its `base`.
const SEQUENCE: usize = index(EVENT_COLUMNS, "sequence");
const TRANSACTION_ID: usize = index(EVENT_COLUMNS, "transaction_id");
const VERSION: usize = index(EVENT_COLUMNS, "version");
const NAME: usize = index(EVENT_COLUMNS, "name");
const EVENT_VERSION: usize = index(EVENT_COLUMNS, "event_version");
const PAYLOAD: usize = index(EVENT_COLUMNS, "payload");
const METADATA: usize = index(EVENT_COLUMNS, "metadata");
const RECORDED_AT: usize = index(EVENT_COLUMNS, "recorded_at");
const EVENT_ID: usize = index(EVENT_COLUMNS, "event_id");

/// Decodes the event whose columns ([`EVENT_COLUMNS`]) start at `base`.
///
/// The store's queries fix the columns' types, so they are read by position without the
/// per-column type check; a value that does not decode is still an error, which names the
/// stream and the version of the row once they are known
/// ([`DecodeError::MalformedRow`]).
pub(super) fn decode_event(
    row: &PgRow,
    base: usize,
    stream: StreamId,
    shared: &mut Shared,
) -> Result<RecordedEvent, esrs_core::Error> {
    let version: i64 = row.try_get_unchecked(base + VERSION).map_err(to_core)?;
    let version = unsigned(version);
    let bad = |column: usize| malformed(&stream, version, EVENT_COLUMNS[column].name);
    let sequence: i64 = row
        .try_get_unchecked(base + SEQUENCE)
        .map_err(bad(SEQUENCE))?;
    let transaction: Xid8 = row
        .try_get_unchecked(base + TRANSACTION_ID)
        .map_err(bad(TRANSACTION_ID))?;
    let name: &str = row.try_get_unchecked(base + NAME).map_err(bad(NAME))?;
    let name = shared.name(name);
    let event_version = row
        .try_get_unchecked(base + EVENT_VERSION)
        .and_then(stored_event_version)
        .map_err(bad(EVENT_VERSION))?;
    // The text as stored (the column is `json`, which PostgreSQL checks on the way in).
    let payload: &str = row
        .try_get_unchecked(base + PAYLOAD)
        .map_err(bad(PAYLOAD))?;
    let metadata = row
        .try_get_raw(base + METADATA)
        .and_then(|raw| {
            if raw.is_null() {
                return Ok(Metadata::default());
            }
            let Json(metadata): Json<Metadata> = row.try_get_unchecked(base + METADATA)?;
            Ok(metadata)
        })
        .map_err(bad(METADATA))?;
    let recorded_at = timestamp(row, base + RECORDED_AT).map_err(bad(RECORDED_AT))?;
    let id: uuid::Uuid = row
        .try_get_unchecked(base + EVENT_ID)
        .map_err(bad(EVENT_ID))?;
    Ok(RecordedEvent::new(
        Position::new(transaction.0, unsigned(sequence)),
        stream,
        version,
        name,
        event_version,
        payload,
        metadata,
        recorded_at,
    )
    .with_id(id))
}

/// The columns [`decode_fold_event`] reads, in order from its `base`.
pub(crate) const FOLD_EVENT_COLUMNS: &[Column] = &[
    Column::new("version", INT8),
    Column::new("name", TEXT),
    Column::new("event_version", INT4),
    Column::new("payload", JSON),
];

/// Where [`decode_fold_event`] reads each part of an event, from its `base`.
const FOLD_VERSION: usize = index(FOLD_EVENT_COLUMNS, "version");
const FOLD_NAME: usize = index(FOLD_EVENT_COLUMNS, "name");
const FOLD_EVENT_VERSION: usize = index(FOLD_EVENT_COLUMNS, "event_version");
const FOLD_PAYLOAD: usize = index(FOLD_EVENT_COLUMNS, "payload");

/// Decodes the event of `stream` whose columns ([`FOLD_EVENT_COLUMNS`]) start at `base` as
/// a fold needs it (read by position, as [`decode_event`] does). The payload is copied as
/// stored, not checked: the event's decode parses it once, and reports text that is not
/// JSON.
pub(super) fn decode_fold_event(
    row: &PgRow,
    base: usize,
    stream: &StreamId,
    shared: &mut Shared,
) -> Result<FoldEvent, esrs_core::Error> {
    let version: i64 = row
        .try_get_unchecked(base + FOLD_VERSION)
        .map_err(to_core)?;
    let version = unsigned(version);
    let bad = |column: usize| malformed(stream, version, FOLD_EVENT_COLUMNS[column].name);
    let name: &str = row
        .try_get_unchecked(base + FOLD_NAME)
        .map_err(bad(FOLD_NAME))?;
    let name = shared.name(name);
    let event_version = row
        .try_get_unchecked(base + FOLD_EVENT_VERSION)
        .and_then(stored_event_version)
        .map_err(bad(FOLD_EVENT_VERSION))?;
    // The text as stored: the event's decode parses it, once.
    let payload: &str = row
        .try_get_unchecked(base + FOLD_PAYLOAD)
        .map_err(bad(FOLD_PAYLOAD))?;
    Ok(FoldEvent::new(version, name, event_version, payload))
}
