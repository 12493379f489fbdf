//! Exports: every matching row, streamed as CSV or NDJSON, produced as a sequence of short
//! keyset queries of `chunk_rows` rows each. Each chunk is fetched whole into a bounded buffer
//! and its connection returned before the client reads it, so no statement stays open while a
//! slow client reads, `statement_timeout` applies per chunk, and no transaction holds a
//! snapshot for minutes. The next chunk is fetched while the last one is written, and no
//! further: a slow client slows the queries (backpressure), and memory stays at two chunks
//! whatever the row count. A client that leaves during a query cancels it
//! ([`super::Running`]).
//!
//! Key columns are always exported, so a broken download resumes with
//! `after=<key of the last complete row>`.
//!
//! CSV chunks are `COPY (SELECT …) TO STDOUT (FORMAT csv)` statements by default
//! (`csv_via: copy`): PostgreSQL writes the CSV and pagegate passes the bytes on, reading back
//! only each chunk's last row for the next chunk's key. Measured on a million rows of five
//! columns (bench/pg.sh): 1.4 times the rows/s of the chunked queries, whose rows pagegate
//! decodes and quotes itself. `COPY` takes no bind parameters, so its filter and key values
//! are literals pagegate writes ([`sql::inline`]): a value that could end a string literal goes
//! in as hex digits. Both paths select the same expressions and give the same bytes; the query
//! path remains for NDJSON, for unnamed statements (PgBouncer in transaction mode) and for
//! array keys, whose CSV form (JSON) does not cast back.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use http::{HeaderValue, header};
use http_body_util::{BodyExt, StreamBody};

use super::sql::{self, Filter, Shape};
use super::{Catalog, PgError, Resource, Running, pool_error};
use crate::config::{CsvVia, ExportFormat};
use crate::{BoxError, Response};

/// Writes `value` as one RFC 4180 field: quoted when it holds a comma, a quote, CR or LF (or
/// is empty, to tell an empty string from NULL, which is an empty field).
pub(crate) fn csv_field(out: &mut BytesMut, value: Option<&str>) {
    let Some(value) = value else { return };
    let quote = value.is_empty()
        || value
            .bytes()
            .any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n'));
    if !quote {
        out.put_slice(value.as_bytes());
        return;
    }
    out.put_u8(b'"');
    for part in value.split('"').enumerate() {
        if part.0 > 0 {
            out.put_slice(b"\"\"");
        }
        out.put_slice(part.1.as_bytes());
    }
    out.put_u8(b'"');
}

/// The fields of one CSV record as PostgreSQL's `COPY … (FORMAT csv)` writes it (a line of
/// RFC 4180 fields, `""` for a quote inside a quoted field, an empty unquoted field for NULL);
/// `None` when it is not one. Only the last record of each chunk is read, for its key.
pub(crate) fn csv_record(line: &[u8]) -> Option<Vec<Option<String>>> {
    let line = line.strip_suffix(b"\n")?;
    let mut fields = Vec::new();
    let mut rest = line;
    loop {
        if let Some(quoted) = rest.strip_prefix(b"\"") {
            let mut value = Vec::new();
            let mut at = 0;
            loop {
                let end = at + memchr::memchr(b'"', &quoted[at..])?;
                value.extend_from_slice(&quoted[at..end]);
                if quoted.get(end + 1) == Some(&b'"') {
                    value.push(b'"');
                    at = end + 2;
                } else {
                    rest = &quoted[end + 1..];
                    break;
                }
            }
            fields.push(Some(String::from_utf8(value).ok()?));
        } else {
            let end = memchr::memchr(b',', rest).unwrap_or(rest.len());
            let value = &rest[..end];
            if value.contains(&b'"') {
                return None;
            }
            fields.push((!value.is_empty()).then(|| String::from_utf8_lossy(value).into_owned()));
            rest = &rest[end..];
        }
        match rest.split_first() {
            None => return Some(fields),
            Some((b',', after)) => rest = after,
            Some(_) => return None,
        }
    }
}

/// Where an export stands between chunks.
struct Cursor {
    resource: Arc<Resource>,
    catalog: Arc<Catalog>,
    columns: Vec<String>,
    filters: Vec<Filter>,
    format: ExportFormat,
    after: Option<Vec<String>>,
    header: bool,
    done: bool,
    /// CSV written by PostgreSQL's `COPY` rather than by pagegate from query rows.
    copy: bool,
}

impl Cursor {
    /// The next chunk's bytes, or `None` after the last.
    async fn next(&mut self) -> Option<Result<Bytes, PgError>> {
        if self.done {
            return None;
        }
        if self.copy {
            return self.next_copied().await;
        }
        let resource = Arc::clone(&self.resource);
        let table = &resource.table;
        let shape = match self.format {
            ExportFormat::Csv => Shape::Csv,
            ExportFormat::Ndjson => Shape::Row,
        };
        let rows = table.chunk_rows.get();
        let statement = sql::select(
            table,
            &self.catalog,
            &self.columns,
            shape,
            &self.filters,
            self.after.as_deref(),
            rows,
        );
        let fetched = match self.resource.database.export_pool().get().await {
            Ok(client) => {
                Running::new(client)
                    .rows(&statement, self.resource.database.unnamed())
                    .await
            }
            Err(error) => Err(pool_error(&error)),
        };
        let fetched = match fetched {
            Ok(fetched) => fetched,
            Err(error) => {
                self.done = true;
                return Some(Err(error));
            }
        };
        self.done = fetched.len() < rows as usize;
        let width = self.columns.len();
        let mut out = BytesMut::with_capacity(fetched.len() * 64 + 256);
        self.header(&mut out);
        for row in &fetched {
            match self.format {
                ExportFormat::Csv => {
                    for i in 0..width {
                        if i > 0 {
                            out.put_u8(b',');
                        }
                        match row.get::<_, Option<&str>>(i) {
                            // As `COPY` writes it: a lone `\.` would read as its end-of-data
                            // marker.
                            Some(marker @ "\\.") if width == 1 => {
                                out.put_u8(b'"');
                                out.put_slice(marker.as_bytes());
                                out.put_u8(b'"');
                            }
                            value => csv_field(&mut out, value),
                        }
                    }
                }
                ExportFormat::Ndjson => out.put_slice(row.get::<_, &str>(0).as_bytes()),
            }
            out.put_u8(b'\n');
        }
        let first_key = match self.format {
            ExportFormat::Csv => width,
            ExportFormat::Ndjson => 1,
        };
        if let Some(last) = fetched.last() {
            match super::key_of(last, first_key, table.key.len()) {
                Ok(key) => self.after = Some(key),
                Err(error) => {
                    self.done = true;
                    return Some(Err(error));
                }
            }
        }
        if out.is_empty() && self.done {
            return None;
        }
        Some(Ok(out.freeze()))
    }
}

impl Cursor {
    /// The CSV header row, the first time.
    fn header(&mut self, out: &mut BytesMut) {
        if std::mem::take(&mut self.header) && self.format == ExportFormat::Csv {
            for (i, column) in self.columns.iter().enumerate() {
                if i > 0 {
                    out.put_u8(b',');
                }
                csv_field(out, Some(column));
            }
            out.put_u8(b'\n');
        }
    }

    /// The next chunk as `COPY` writes it, its last row read back for the key.
    async fn next_copied(&mut self) -> Option<Result<Bytes, PgError>> {
        let resource = Arc::clone(&self.resource);
        let table = &resource.table;
        let rows = table.chunk_rows.get();
        let statement = sql::select(
            table,
            &self.catalog,
            &self.columns,
            Shape::Copy,
            &self.filters,
            self.after.as_deref(),
            rows,
        );
        let copied = match self.resource.database.export_pool().get().await {
            Ok(client) => Running::new(client).copy(&statement.sql).await,
            Err(error) => Err(pool_error(&error)),
        };
        let copied = match copied {
            Ok(copied) => copied,
            Err(error) => {
                self.done = true;
                return Some(Err(error));
            }
        };
        self.done = copied.rows < rows as usize;
        if copied.rows > 0 {
            let key = csv_record(&copied.last).and_then(|fields| {
                table
                    .key
                    .iter()
                    .map(|k| {
                        let at = self.columns.iter().position(|c| *c == k.column)?;
                        fields.get(at).cloned().flatten()
                    })
                    .collect::<Option<Vec<String>>>()
            });
            match key {
                Some(key) => self.after = Some(key),
                None => {
                    tracing::error!(
                        "the last row of an export chunk has no readable key (a NULL key in a view?)"
                    );
                    self.done = true;
                    return Some(Err(PgError::Unavailable));
                }
            }
        }
        let mut out = BytesMut::new();
        self.header(&mut out);
        if out.is_empty() {
            out = copied.bytes;
        } else {
            out.extend_from_slice(&copied.bytes);
        }
        if out.is_empty() && self.done {
            return None;
        }
        Some(Ok(out.freeze()))
    }
}

/// Whether CSV may come from `COPY`: configured so (`csv_via: copy`), statements may be named
/// (`copy_out` prepares one, which PgBouncer in transaction mode may lose between round trips),
/// and every key column reads back from its CSV text (an array's is JSON, which does not cast
/// back to the array).
fn copy_fits(resource: &Resource, catalog: &Catalog) -> bool {
    resource.table.csv_via == CsvVia::Copy
        && !resource.database.unnamed()
        && resource.table.key.iter().all(|k| {
            catalog
                .columns
                .get(&k.column)
                .is_some_and(|c| !c.sql_type.ends_with("[]"))
        })
}

/// Where the export's producer stands: fetching the next chunk in a task of its own, or past
/// its last.
enum Ahead {
    Fetching(AbortOnDrop),
    Done,
}

impl Ahead {
    fn fetch(mut cursor: Cursor) -> Self {
        Self::Fetching(AbortOnDrop(tokio::spawn(async move {
            let chunk = cursor.next().await;
            (cursor, chunk)
        })))
    }
}

type Fetched = (Cursor, Option<Result<Bytes, PgError>>);

/// A chunk's fetch, aborted when the body is dropped (the client left): the task's statement is
/// cancelled then ([`super::Running`]).
struct AbortOnDrop(tokio::task::JoinHandle<Fetched>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The streamed export of `resource`.
pub(super) async fn response(
    resource: &Arc<Resource>,
    catalog: Arc<Catalog>,
    fields: Option<Vec<String>>,
    filters: Vec<Filter>,
    after: Option<Vec<String>>,
    format: Option<ExportFormat>,
) -> Result<Response, PgError> {
    let table = &resource.table;
    let mut columns = fields.unwrap_or_else(|| table.columns.clone());
    for key in &table.key {
        if !columns.contains(&key.column) {
            columns.push(key.column.clone());
        }
    }
    let format = format.unwrap_or(ExportFormat::Csv);
    let copy = format == ExportFormat::Csv && copy_fits(resource, &catalog);
    let mut cursor = Cursor {
        resource: Arc::clone(resource),
        catalog,
        columns,
        filters,
        format,
        after,
        header: true,
        done: false,
        copy,
    };
    // The first chunk before the head: a malformed value (400), a timeout (504) or no
    // connection (503) is still answered as such.
    let first = cursor.next().await.transpose()?;
    let ahead = if cursor.done {
        Ahead::Done
    } else {
        Ahead::fetch(cursor)
    };
    let chunks = futures_util::stream::unfold((first, ahead), |(first, state)| async move {
        if let Some(chunk) = first {
            return Some((Ok(chunk), (None, state)));
        }
        let (cursor, chunk) = match state {
            Ahead::Fetching(mut task) => match (&mut task.0).await {
                Ok(fetched) => fetched,
                Err(error) => {
                    // A failed task is a failed export, never a short one that looks whole.
                    tracing::error!(%error, "an export chunk's task failed");
                    return Some((Err(PgError::Unavailable), (None, Ahead::Done)));
                }
            },
            Ahead::Done => return None,
        };
        match chunk? {
            Err(error) => Some((Err(error), (None, Ahead::Done))),
            Ok(bytes) => {
                // The next chunk is fetched while this one is written: the database and the
                // client work at once, and two chunks at most are held.
                let next = if cursor.done {
                    Ahead::Done
                } else {
                    Ahead::fetch(cursor)
                };
                Some((Ok(bytes), (None, next)))
            }
        }
    })
    // Fused: a body may be polled again after its end (a compressing layer does).
    .fuse()
    .map(|chunk| {
        chunk.map(http_body::Frame::data).map_err(|error| {
            // The head has left: the stream is cut, and the client sees a broken download it
            // can resume with `after`.
            tracing::warn!(%error, "export cut");
            BoxError::from(error)
        })
    });
    // A body must be `Sync`; the query futures inside are not (they are only ever polled
    // through `&mut`, which is what `SyncStream` relies on).
    let chunks = sync_wrapper::SyncStream::new(chunks);
    let mut response = http::Response::new(BodyExt::boxed(StreamBody::new(chunks)));
    let content_type = match format {
        ExportFormat::Csv => "text/csv; charset=utf-8",
        ExportFormat::Ndjson => "application/x-ndjson",
    };
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_as_rfc_4180_says() {
        let mut out = BytesMut::new();
        for (i, value) in [
            Some("plain"),
            Some("a,b"),
            Some("say \"hi\""),
            Some("two\nlines"),
            Some(""),
            None,
        ]
        .into_iter()
        .enumerate()
        {
            if i > 0 {
                out.put_u8(b',');
            }
            csv_field(&mut out, value);
        }
        assert_eq!(
            &out[..],
            b"plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",\"\","
        );
    }

    #[test]
    fn csv_records_read_back_as_postgresql_writes_them() {
        let record = |line: &[u8]| csv_record(line);
        assert_eq!(
            record(b"1,plain,,\"\",\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\"\n"),
            Some(vec![
                Some("1".to_owned()),
                Some("plain".to_owned()),
                None,
                Some(String::new()),
                Some("a,b".to_owned()),
                Some("say \"hi\"".to_owned()),
                Some("two\nlines".to_owned()),
            ])
        );
        assert_eq!(record(b"x\n"), Some(vec![Some("x".to_owned())]));
        assert_eq!(record(b",\n"), Some(vec![None, None]));
        // Not a record: no line end, an unclosed quote, a quote inside a bare field, text
        // after a closing quote.
        for bad in [&b"1,2"[..], b"\"open\n", b"a\"b\n", b"\"a\"b\n"] {
            assert_eq!(record(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
