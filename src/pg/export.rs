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
//! The chunked queries, not `COPY … TO STDOUT`: `COPY` takes no bind parameters, so filter and
//! key values would have to be rendered into SQL text; the chunked path keeps every value a
//! parameter and needs no long-running statement.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use http::{HeaderValue, header};
use http_body_util::{BodyExt, StreamBody};

use super::sql::{self, Filter, Shape};
use super::{Catalog, PgError, Resource, Running, pool_error};
use crate::config::ExportFormat;
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
}

impl Cursor {
    /// The next chunk's bytes, or `None` after the last.
    async fn next(&mut self) -> Option<Result<Bytes, PgError>> {
        if self.done {
            return None;
        }
        let table = &self.resource.table;
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
        let fetched = match self.resource.database.pool().get().await {
            Ok(client) => Running::new(client).rows(&statement).await,
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
        if std::mem::take(&mut self.header) && self.format == ExportFormat::Csv {
            for (i, column) in self.columns.iter().enumerate() {
                if i > 0 {
                    out.put_u8(b',');
                }
                csv_field(&mut out, Some(column));
            }
            out.put_u8(b'\n');
        }
        for row in &fetched {
            match self.format {
                ExportFormat::Csv => {
                    for i in 0..width {
                        if i > 0 {
                            out.put_u8(b',');
                        }
                        csv_field(&mut out, row.get::<_, Option<&str>>(i));
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
    let mut cursor = Cursor {
        resource: Arc::clone(resource),
        catalog,
        columns,
        filters,
        format,
        after,
        header: true,
        done: false,
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
}
