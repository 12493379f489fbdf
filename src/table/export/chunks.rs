//! One export's chunks ([`Chunks`]): each a short keyset query (or `COPY`) of `chunk_rows`
//! rows, fetched whole into a bounded buffer and written as CSV or NDJSON, the next starting after
//! the last key sent.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use prometheus_client::metrics::counter::Counter;

use crate::table::config::ExportFormat;
use crate::table::csv::{self, Stamps};
use crate::table::running::{Ctx, value};
use crate::table::sql::{self, Filter, Shape};
use crate::table::{Catalog, PgError, Resource, ndjson};

/// Where an export stands between chunks: the next chunk starts after the last key sent.
pub(super) struct Chunks {
    pub(super) resource: Arc<Resource>,
    pub(super) catalog: Arc<Catalog>,
    pub(super) columns: Vec<String>,
    pub(super) filters: Vec<Filter>,
    pub(super) format: ExportFormat,
    pub(super) after: Option<Vec<String>>,
    pub(super) header: bool,
    pub(super) done: bool,
    /// Rows read with `COPY` rather than with queries.
    pub(super) copy: bool,
    /// With `copy`: what becomes of each row.
    pub(super) writer: Writer,
    /// Bytes of the last chunk: the next one's buffer starts that large.
    pub(super) capacity: usize,
    /// For the log.
    pub(super) ctx: Ctx,
    /// A chunk was fetched.
    pub(super) served: bool,
    /// The route's `pagegate_export_rows_total`.
    pub(super) rows: Counter,
}

/// What becomes of each row `COPY` gives.
pub(super) enum Writer {
    /// CSV: passed on, its timestamps rewritten to RFC 3339.
    Csv(Stamps),
    /// NDJSON: one JSON object a row.
    Ndjson(ndjson::Rows),
}

impl Writer {
    /// Writes `row` out; false when it cannot be read: not a CSV record of the columns, or not
    /// UTF-8 (text from a `SQL_ASCII` database), which neither format may carry.
    fn push(&self, row: &[u8], out: &mut BytesMut) -> bool {
        if std::str::from_utf8(row).is_err() {
            return false;
        }
        match self {
            Self::Csv(stamps) => {
                stamps.push(row, out);
                true
            }
            Self::Ndjson(rows) => rows.push(row, out),
        }
    }
}

impl Chunks {
    /// The next chunk's bytes, or `None` after the last.
    pub(super) async fn next(&mut self) -> Option<Result<Bytes, PgError>> {
        if self.done {
            return None;
        }
        if self.copy {
            return self.next_copied().await;
        }
        let resource = Arc::clone(&self.resource);
        let table = resource.table();
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
        let fetched = match self.resource.connection(true, &self.ctx).await {
            Ok(running) => running.rows(&statement).await,
            Err(error) => Err(error),
        };
        let fetched = match fetched {
            Ok(fetched) => fetched,
            Err(error) => return self.fail(error),
        };
        self.served = true;
        self.done = fetched.len() < rows as usize;
        self.rows.inc_by(fetched.len() as u64);
        let width = self.columns.len();
        let mut out = BytesMut::with_capacity(fetched.len() * 64 + 256);
        self.header(&mut out);
        if let Err(error) = self.write_rows(&fetched, &mut out) {
            return self.fail(error);
        }
        let first_key = match self.format {
            ExportFormat::Csv => width,
            ExportFormat::Ndjson => 1,
        };
        if let Some(last) = fetched.last() {
            match crate::table::running::key_of(last, first_key, table.key.len()) {
                Ok(key) => self.after = Some(key),
                Err(error) => {
                    return self.fail(error);
                }
            }
        }
        if out.is_empty() && self.done {
            return None;
        }
        Some(Ok(out.freeze()))
    }

    /// Writes query rows out: CSV from each column's text, NDJSON from `row_to_json`.
    fn write_rows(&self, rows: &[tokio_postgres::Row], out: &mut BytesMut) -> Result<(), PgError> {
        let width = self.columns.len();
        for row in rows {
            match self.format {
                ExportFormat::Csv => {
                    for i in 0..width {
                        if i > 0 {
                            out.put_u8(b',');
                        }
                        match value::<Option<&str>>(row, i)? {
                            // As `COPY` writes it: a lone `\.` would read as its end-of-data
                            // marker.
                            Some(marker @ "\\.") if width == 1 => {
                                out.put_u8(b'"');
                                out.put_slice(marker.as_bytes());
                                out.put_u8(b'"');
                            }
                            text => csv::field(out, text),
                        }
                    }
                }
                // A `json` column keeps its line breaks inside `row_to_json`: spaces, so the
                // row stays one line.
                ExportFormat::Ndjson => ndjson::one_line(value::<&str>(row, 0)?.as_bytes(), out),
            }
            out.put_u8(b'\n');
        }
        Ok(())
    }

    /// The export's end on `error`: no chunk after it. A table that changed under the route
    /// is read again before the next statement.
    fn fail(&mut self, error: PgError) -> Option<Result<Bytes, PgError>> {
        self.done = true;
        // After the first chunk, no client value is new: a table that changed is one (the
        // first chunk's errors are answered by `Resource::answer`).
        if matches!(error, PgError::Changed) && self.served {
            self.resource.forget();
        }
        Some(Err(error))
    }

    /// The CSV header row, the first time.
    fn header(&mut self, out: &mut BytesMut) {
        if std::mem::take(&mut self.header) && self.format == ExportFormat::Csv {
            for (i, column) in self.columns.iter().enumerate() {
                if i > 0 {
                    out.put_u8(b',');
                }
                csv::field(out, Some(column));
            }
            out.put_u8(b'\n');
        }
    }

    /// The next chunk as `COPY` writes it, its last row read back for the key.
    async fn next_copied(&mut self) -> Option<Result<Bytes, PgError>> {
        let resource = Arc::clone(&self.resource);
        let table = resource.table();
        let rows = table.chunk_rows.get();
        let statement = sql::select(
            table,
            &self.catalog,
            &self.columns,
            match self.format {
                ExportFormat::Csv => Shape::CopyCsv,
                ExportFormat::Ndjson => Shape::CopyNdjson,
            },
            &self.filters,
            self.after.as_deref(),
            rows,
        );
        let copied = match self.resource.connection(true, &self.ctx).await {
            Ok(running) => {
                // The header first, then the rows, in one buffer sized as the last chunk was.
                let mut out = BytesMut::with_capacity(self.capacity);
                self.header(&mut out);
                let writer = &self.writer;
                running
                    .copy(&statement.sql, out, |row, out| writer.push(row, out))
                    .await
            }
            Err(error) => Err(error),
        };
        let copied = match copied {
            Ok(copied) => copied,
            Err(error) => return self.fail(error),
        };
        self.served = true;
        self.done = copied.rows < rows as usize;
        self.rows.inc_by(copied.rows as u64);
        if copied.rows > 0 {
            let key = csv::record(&copied.last).and_then(|fields| {
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
                        route = &*self.ctx.route,
                        request_id = self.ctx.request.as_deref().unwrap_or("-"),
                        "the last row of an export chunk has no readable key (a NULL key in a view?)"
                    );
                    return self.fail(PgError::Database);
                }
            }
        }
        let out = copied.bytes;
        self.capacity = out.len();
        if out.is_empty() && self.done {
            return None;
        }
        Some(Ok(out.freeze()))
    }
}
