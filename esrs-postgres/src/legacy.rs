//! Importing an existing system: the rows of a table (or of any query) turned into events,
//! with their original times, idempotently.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use esrs_core::StreamId;
use futures_util::TryStreamExt as _;
use serde_json::{Map, Value};
use sqlx::Row as _;

use crate::PgStore;

/// Events inserted per statement.
const BATCH: usize = 1_000;

/// How the rows of an existing table become events: read from a mapping file by
/// `esrs import-table`, or built in code.
///
/// ```json
/// {
///   "name": "legacy-invoices",
///   "query": "SELECT id, customer, amount_cents, issued_at FROM legacy.invoices",
///   "stream": "invoice-{id}",
///   "event": "InvoiceIssued",
///   "event_version": 1,
///   "payload": ["customer", "amount_cents"],
///   "time": "issued_at",
///   "order_by": ["issued_at", "id"]
/// }
/// ```
///
/// Each row of `query`, in `order_by` order, becomes one event of the stream named by the
/// `stream` template (`{column}` is replaced by the row's value), named `event`, whose
/// payload is a JSON object of the `payload` columns, recorded at the row's `time`. The
/// k-th row of a stream is its version k: a second run appends only the rows past each
/// stream's version, so no row is imported twice, and rows added to the table since are
/// imported then. The rows already imported must not change order or be deleted (for a
/// table that changes, capture its changes instead: see [`CaptureMapping`] and
/// [`capture`](crate::capture), and the hand-over below).
///
/// # Hand-over to a change capture
///
/// With a [`capture`](Self::capture) section, the import is the first half of a hand-over
/// whose second half is the [`CaptureRelay`](crate::capture::CaptureRelay): apply the
/// capture first ([`capture::apply`](crate::capture::apply)), then import, then run the
/// relay. The import reads the table in one snapshot, which it records with the relay; the
/// relay skips every captured change of a transaction visible in that snapshot (the import
/// holds its effect) and appends every other one. Each row's history is then in its stream
/// exactly once: its state at the import, then each later change. The import refuses to
/// run before the capture is applied, or once the relay has appended changes without an
/// import; and once it has run, a second run reads nothing and reports
/// [`handed_over`](TableImport::handed_over): the table's changes are the relay's.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TableMapping {
    /// A label recorded in each event's metadata (the custom field `imported_from`).
    pub name: String,
    /// The rows: a table name or a `SELECT`.
    pub query: String,
    /// The stream id template: text with `{column}` placeholders.
    pub stream: String,
    /// The stored name of the events.
    pub event: String,
    /// The schema version of their payloads.
    #[serde(default = "one")]
    pub event_version: u32,
    /// The columns copied into the payload, under their own names.
    pub payload: Vec<String>,
    /// The column holding each row's time (a `timestamptz` or `timestamp`, read as UTC).
    pub time: String,
    /// The columns that order the rows: their order in the log and in each stream.
    pub order_by: Vec<String>,
    /// The capture of the table's later changes, if it is captured: see
    /// [`capture`](crate::capture).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture: Option<CaptureMapping>,
}

/// The `capture` section of a [`TableMapping`]: how the changes of a table are recorded
/// (by a trigger, into a capture table) and which events they become.
///
/// ```json
/// "capture": {
///   "insert": "InvoiceIssued",
///   "update": "InvoiceChanged",
///   "delete": "InvoiceCancelled"
/// }
/// ```
///
/// An inserted or updated row becomes an event of the stream its new values name, a
/// deleted row one of the stream its old values name, with the mapping's payload columns
/// and version, recorded at the time of the change. The stream id columns should not
/// change in an update (they are the row's identity, as a primary key is). `TRUNCATE` is
/// not captured: empty the table with `DELETE` while it is captured.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureMapping {
    /// The captured table (`name` or `schema.name`); by default the mapping's `query`,
    /// which must then name a table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// The stored name of the events of inserted rows.
    pub insert: String,
    /// The stored name of the events of updated rows.
    pub update: String,
    /// The stored name of the events of deleted rows.
    pub delete: String,
    /// The table the trigger records changes in (`name` or `schema.name`, plain lowercase
    /// identifiers); by default `capture_<name>` in the store's schema, `<name>` being the
    /// mapping's name with every character other than a letter, a digit or `_` as `_`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture_table: Option<String>,
}

fn one() -> u32 {
    1
}

/// What [`PgStore::import_table`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[non_exhaustive]
pub struct TableImport {
    /// Rows read.
    pub rows: u64,
    /// Events appended.
    pub imported: u64,
    /// Rows skipped as imported before.
    pub already_imported: u64,
    /// The table is captured and was imported before: its changes since are the capture
    /// relay's, and this import read nothing (see [`TableMapping`]'s hand-over).
    pub handed_over: bool,
}

/// The error of [`PgStore::import_table`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TableImportError {
    /// The mapping is unusable.
    #[error("the mapping is invalid: {0}")]
    Mapping(String),
    /// A row does not fit the mapping: a missing column, an invalid stream id, a time that
    /// is not one. Nothing was imported.
    #[error("row {row} does not fit the mapping: {reason}")]
    Row {
        /// The row's number in `order_by` order (the first is 1).
        row: u64,
        /// What is wrong.
        reason: String,
    },
    /// The mapping has a capture section, but the capture is not applied: apply it first
    /// (`esrs capture apply`), so that no change made during the import is lost.
    #[error(
        "the capture `{name}` is not applied: apply it first (`esrs capture apply`), then import, then run the relay"
    )]
    CaptureNotApplied {
        /// The mapping's name.
        name: String,
    },
    /// The capture relay has appended changes of the table without an import: importing
    /// now would append those rows twice.
    #[error(
        "the capture `{name}` has relayed changes without an import: the table's history is the relay's, import refused"
    )]
    CaptureStarted {
        /// The mapping's name.
        name: String,
    },
    /// The database failed. Nothing was imported.
    #[error("the import's database work failed")]
    Database(#[source] crate::Error),
}

impl From<sqlx::Error> for TableImportError {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(crate::Error::from_sqlx(error))
    }
}

impl From<crate::Error> for TableImportError {
    fn from(error: crate::Error) -> Self {
        Self::Database(error)
    }
}

/// A column name as an SQL identifier.
pub(crate) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The text of a JSON value as it goes into a stream id.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The columns a stream id template names.
pub(crate) fn template_columns(template: &str) -> Result<Vec<&str>, String> {
    let mut columns = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("the stream template `{template}` has an unclosed `{{`"))?;
        columns.push(&after[..close]);
        rest = &after[close + 1..];
    }
    Ok(columns)
}

/// The stream id of `row` by `template`.
pub(crate) fn stream_id(template: &str, row: &Map<String, Value>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("the stream template `{template}` has an unclosed `{{`"))?;
        let column = &after[..close];
        let value = row
            .get(column)
            .filter(|v| !v.is_null())
            .ok_or_else(|| format!("no value in column `{column}` for the stream id"))?;
        out.push_str(&text(value));
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Rows to insert, one array per column.
#[derive(Default)]
struct Batch {
    streams: Vec<String>,
    versions: Vec<i64>,
    payloads: Vec<String>,
    times: Vec<DateTime<Utc>>,
}

impl Batch {
    /// Inserts the rows in their order and empties the batch; returns the rows inserted.
    async fn insert(
        &mut self,
        tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
        schema: &str,
        mapping: &TableMapping,
        metadata: &str,
    ) -> Result<u64, TableImportError> {
        if self.streams.is_empty() {
            return Ok(0);
        }
        let inserted = sqlx::query(&format!(
            "INSERT INTO {schema}.events
                 (stream_id, version, name, event_version, payload, metadata, recorded_at)
             SELECT t.stream_id, t.version, $5, $6, t.payload::json, $7::jsonb, t.recorded_at
             FROM unnest($1::text[], $2::bigint[], $3::text[], $4::timestamptz[])
                 WITH ORDINALITY AS t(stream_id, version, payload, recorded_at, i)
             ORDER BY t.i"
        ))
        .bind(&self.streams)
        .bind(&self.versions)
        .bind(&self.payloads)
        .bind(&self.times)
        .bind(&mapping.event)
        .bind(mapping.event_version as i32)
        .bind(metadata)
        .execute(&mut **tx)
        .await?;
        *self = Self::default();
        Ok(inserted.rows_affected())
    }
}

impl TableMapping {
    fn check(&self) -> Result<(), TableImportError> {
        let invalid = |reason: &str| Err(TableImportError::Mapping(reason.to_owned()));
        if self.query.trim().is_empty() {
            return invalid("`query` is empty");
        }
        if self.event.trim().is_empty() {
            return invalid("`event` is empty");
        }
        if self.order_by.is_empty() {
            return invalid("`order_by` names no column: the rows need a stable order");
        }
        if !self.stream.contains('{') {
            return invalid(
                "the `stream` template has no `{column}`: every row would go to one stream",
            );
        }
        if self.event_version == 0 || i32::try_from(self.event_version).is_err() {
            return invalid("`event_version` must be between 1 and 2147483647");
        }
        Ok(())
    }
}

impl PgStore {
    /// Imports the rows of `mapping` as events (see [`TableMapping`]), in one
    /// transaction: a row that does not fit fails the import, and nothing is written.
    /// Appends to the store wait until it commits.
    pub async fn import_table(
        &self,
        mapping: &TableMapping,
    ) -> Result<TableImport, TableImportError> {
        mapping.check()?;
        let schema = self.schema();
        let mut tx = self.pool().begin().await?;
        sqlx::query(&format!("LOCK TABLE {schema}.events IN EXCLUSIVE MODE"))
            .execute(&mut *tx)
            .await?;
        if mapping.capture.is_some() {
            match crate::capture::relay_state(&mut tx, schema, &mapping.name).await? {
                None => {
                    return Err(TableImportError::CaptureNotApplied {
                        name: mapping.name.clone(),
                    });
                }
                Some(state) if state.has_baseline => {
                    return Ok(TableImport {
                        handed_over: true,
                        ..TableImport::default()
                    });
                }
                Some(state) if state.last_id > 0 => {
                    return Err(TableImportError::CaptureStarted {
                        name: mapping.name.clone(),
                    });
                }
                Some(_) => {}
            }
        }
        let versions: HashMap<String, i64> = sqlx::query_as(&format!(
            "SELECT stream_id, max(version) FROM {schema}.events GROUP BY stream_id"
        ))
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
        let head = mapping.query.trim_start().to_lowercase();
        let source = if head.starts_with("select") || head.starts_with("with") {
            mapping.query.clone()
        } else {
            format!("SELECT * FROM {}", mapping.query)
        };
        let order = mapping
            .order_by
            .iter()
            .map(|c| format!("q.{}", ident(c)))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT to_jsonb(q) AS row, (q.{time})::timestamptz AS at
             FROM ({source}) AS q ORDER BY {order}",
            time = ident(&mapping.time),
        );
        let metadata = serde_json::to_string(
            &esrs_core::Metadata::new().with("imported_from", mapping.name.clone()),
        )
        .map_err(|e| TableImportError::Mapping(e.to_string()))?;
        let mut seen: HashMap<String, i64> = HashMap::new();
        let mut report = TableImport::default();
        let mut batch = Batch::default();
        // The rows stream from another connection than the transaction's, so that memory
        // stays flat: a batch at a time is inserted while the next is read. They are read
        // in one snapshot, which a capture relay takes over from.
        let mut reader = self.pool().begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *reader)
            .await?;
        let snapshot: String = sqlx::query_scalar("SELECT pg_current_snapshot()::text")
            .fetch_one(&mut *reader)
            .await?;
        let mut rows = sqlx::query(&sql).fetch(&mut *reader);
        while let Some(row) = rows.try_next().await? {
            report.rows += 1;
            let fail = |reason: String| TableImportError::Row {
                row: report.rows,
                reason,
            };
            let value: Value = row.try_get("row")?;
            let Value::Object(columns) = value else {
                return Err(fail("the row is not a record".to_owned()));
            };
            let at: Option<DateTime<Utc>> = row.try_get("at")?;
            let at = at.ok_or_else(|| fail(format!("column `{}` is null", mapping.time)))?;
            let stream = stream_id(&mapping.stream, &columns).map_err(fail)?;
            StreamId::new(&stream).map_err(|e| fail(format!("stream id `{stream}`: {e}")))?;
            let count = seen.entry(stream.clone()).or_insert(0);
            *count += 1;
            if *count <= versions.get(&stream).copied().unwrap_or(0) {
                report.already_imported += 1;
                continue;
            }
            let mut payload = Map::new();
            for column in &mapping.payload {
                let value = columns
                    .get(column)
                    .ok_or_else(|| fail(format!("no column `{column}`")))?;
                payload.insert(column.clone(), value.clone());
            }
            batch.streams.push(stream);
            batch.versions.push(*count);
            batch.payloads.push(Value::Object(payload).to_string());
            batch.times.push(at);
            if batch.streams.len() == BATCH {
                report.imported += batch.insert(&mut tx, schema, mapping, &metadata).await?;
            }
        }
        report.imported += batch.insert(&mut tx, schema, mapping, &metadata).await?;
        drop(rows);
        reader.commit().await?;
        if mapping.capture.is_some() {
            crate::capture::record_baseline(&mut tx, schema, &mapping.name, &snapshot).await?;
        }
        tx.commit().await?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_fill_the_template_from_the_row() {
        let row: Map<String, Value> =
            serde_json::from_str(r#"{"id": 42, "region": "eu", "none": null}"#).unwrap();
        assert_eq!(
            stream_id("invoice-{region}.{id}", &row).unwrap(),
            "invoice-eu.42"
        );
        assert_eq!(
            stream_id("invoice-{none}", &row).unwrap_err(),
            "no value in column `none` for the stream id"
        );
        assert!(
            stream_id("invoice-{id", &row)
                .unwrap_err()
                .contains("unclosed")
        );
    }
}
