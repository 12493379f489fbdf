//! One export's chunks ([`Chunks`]): each a short keyset query (or `COPY`) of `chunk_rows`
//! rows, fetched whole into a buffer and written as CSV or NDJSON, the next starting after the
//! last key sent. A chunk also ends after the row that reaches `chunk_bytes` (its statement
//! cancelled, its connection closed: see `running::bounded`); the next chunks then ask for as
//! many rows as it held, doubling back toward `chunk_rows` while they fit. A range's first
//! chunk can find its own end first ([`Chunks::next_range`]), so the next range's chunk can be
//! fetched at the same time.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use prometheus_client::metrics::counter::Counter;

use crate::body::trimmed;
use crate::table::config::ExportFormat;
use crate::table::csv::{self, Stamps};
use crate::table::running::{Ctx, Running, key_of, value};
use crate::table::sql::{self, Filter, Shape};
use crate::table::{Catalog, PgError, Resource, ndjson};

/// Where an export (or one key range of it) stands between chunks: the next chunk starts after
/// the last key sent.
#[derive(Clone)]
pub(super) struct Chunks {
    pub(super) resource: Arc<Resource>,
    pub(super) catalog: Arc<Catalog>,
    pub(super) columns: Vec<String>,
    pub(super) filters: Vec<Filter>,
    pub(super) format: ExportFormat,
    pub(super) after: Option<Vec<String>>,
    /// The range's last key, when it has one (the last range runs to the table's end).
    pub(super) until: Option<Vec<String>>,
    pub(super) header: bool,
    /// The range (the whole export when it has no `until`) has no row left.
    pub(super) done: bool,
    /// Rows read with `COPY` rather than with queries.
    pub(super) copy: bool,
    /// With `copy`: what becomes of each row.
    pub(super) writer: Arc<Writer>,
    /// Bytes of the last chunk: the next one's buffer starts that large, and an eighth more.
    pub(super) capacity: usize,
    /// Rows the next chunk asks for: `chunk_rows`, or fewer after a chunk reached
    /// `chunk_bytes`.
    pub(super) rows_per_chunk: u32,
    /// For the log.
    pub(super) ctx: Ctx,
    /// A chunk was fetched.
    pub(super) served: bool,
    /// The route's `pagegate_export_rows_total`.
    pub(super) rows: Counter,
    /// The route's `pagegate_export_chunks_cut_total`.
    pub(super) cut_chunks: Counter,
}

/// One chunk's bytes (whole records, and the header before the first) and its row count.
pub(super) struct Chunk {
    pub(super) bytes: Bytes,
    pub(super) rows: u64,
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
    pub(super) async fn next(&mut self) -> Option<Result<Chunk, PgError>> {
        if self.done {
            return None;
        }
        let mut running = match self.resource.connection(true, &self.ctx).await {
            Ok(running) => running,
            Err(error) => return self.fail(error),
        };
        self.next_on(&mut running).await
    }

    /// The first chunk of the range after `after`, its last key found first (the key
    /// `rows_per_chunk - 1` rows on, by [`sql::boundary`]) and sent on `end` (`None`: this
    /// range runs to the end), so the next range's chunk can be fetched while this one is. A
    /// range is as long as the chunk that reads it: after a chunk reached `chunk_bytes`, a
    /// range of `chunk_rows` would take several chunks one after the other while the ranges
    /// after it waited, and the export would run nearly serially. Both statements run on one
    /// connection, in `place` of the route's share when one was taken to spare.
    pub(super) async fn next_range(
        &mut self,
        end: tokio::sync::oneshot::Sender<Option<Vec<String>>>,
        place: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Option<Result<Chunk, PgError>> {
        let connection = self.resource.connection_in(place, true, &self.ctx);
        let mut running = match connection.await {
            Ok(running) => running,
            Err(error) => return self.fail(error),
        };
        let table = self.resource.table();
        let statement = sql::boundary(
            table,
            &self.catalog,
            &self.filters,
            self.after.as_deref(),
            self.rows_per_chunk.saturating_sub(1),
            self.shape(),
        );
        let until = match running.rows(&statement).await {
            Ok(rows) => rows
                .first()
                .map(|row| key_of(row, 0, table.key.len()))
                .transpose(),
            Err(error) => Err(error),
        };
        let until = match until {
            Ok(until) => until,
            Err(error) => return self.fail(error),
        };
        // The receiver is gone when the export ended first (a failed range before this one).
        let _ = end.send(until.clone());
        self.until = until;
        self.next_on(&mut running).await
    }

    /// The next chunk, read on `running`.
    async fn next_on(&mut self, running: &mut Running) -> Option<Result<Chunk, PgError>> {
        if self.copy {
            return self.next_copied(running).await;
        }
        let resource = Arc::clone(&self.resource);
        let table = resource.table();
        let shape = self.shape();
        let rows = self.rows_per_chunk;
        let statement = sql::select_within(
            table,
            &self.catalog,
            &self.columns,
            shape,
            &self.filters,
            self.bounds(),
            rows,
        );
        let mut out = BytesMut::with_capacity(self.capacity + self.capacity / 8);
        self.header(&mut out);
        let (mut count, mut last) = (0u64, None);
        let bound = usize::try_from(table.chunk_bytes).unwrap_or(usize::MAX);
        let cut = running
            .each_row(&statement, |row| {
                self.write_row(&row, &mut out)?;
                (count, last) = (count + 1, Some(row));
                Ok(out.len() < bound || count == u64::from(rows))
            })
            .await;
        let cut = match cut {
            Ok(cut) => cut,
            Err(error) => return self.fail(error),
        };
        self.served = true;
        self.done = !cut && count < u64::from(rows);
        self.resize(cut, count, out.len());
        self.rows.inc_by(count);
        let first_key = match self.format {
            ExportFormat::Csv => self.columns.len(),
            ExportFormat::Ndjson => 1,
        };
        if let Some(last) = &last {
            match key_of(last, first_key, table.key.len()) {
                Ok(key) => self.after = Some(key),
                Err(error) => {
                    return self.fail(error);
                }
            }
        }
        self.range_done();
        self.capacity = out.len();
        if out.is_empty() && self.done {
            return None;
        }
        Some(Ok(Chunk {
            bytes: trimmed(out),
            rows: count,
        }))
    }

    /// Writes a query row out: CSV from each column's text, NDJSON from `row_to_json`.
    fn write_row(&self, row: &tokio_postgres::Row, out: &mut BytesMut) -> Result<(), PgError> {
        let width = self.columns.len();
        match self.format {
            ExportFormat::Csv => {
                for i in 0..width {
                    if i > 0 {
                        out.put_u8(b',');
                    }
                    match value::<Option<&str>>(row, i)? {
                        // As `COPY` writes it: a lone `\.` would read as its end-of-data marker.
                        Some(marker @ "\\.") if width == 1 => {
                            out.put_u8(b'"');
                            out.put_slice(marker.as_bytes());
                            out.put_u8(b'"');
                        }
                        text => csv::field(out, text),
                    }
                }
            }
            // A `json` column keeps its line breaks inside `row_to_json`: spaces, so the row
            // stays one line.
            ExportFormat::Ndjson => ndjson::one_line(value::<&str>(row, 0)?.as_bytes(), out),
        }
        out.put_u8(b'\n');
        Ok(())
    }

    /// The next chunk's rows: as many as this one held when it reached `chunk_bytes`, else
    /// twice as many (up to `chunk_rows`) when it was full in at most half of `chunk_bytes`.
    fn resize(&mut self, cut: bool, rows: u64, bytes: usize) {
        let table = self.resource.table();
        let most = table.chunk_rows.get();
        let roomy = (bytes as u64).saturating_mul(2) <= table.chunk_bytes;
        if cut {
            self.cut_chunks.inc();
            self.rows_per_chunk = u32::try_from(rows).unwrap_or(most).clamp(1, most);
        } else if u64::from(self.rows_per_chunk) == rows && roomy {
            self.rows_per_chunk = self.rows_per_chunk.saturating_mul(2).min(most);
        }
    }

    /// What the chunks' statements select: `COPY` or query rows, CSV or NDJSON.
    fn shape(&self) -> Shape {
        match (self.copy, self.format) {
            (true, ExportFormat::Csv) => Shape::CopyCsv,
            (true, ExportFormat::Ndjson) => Shape::CopyNdjson,
            (false, ExportFormat::Csv) => Shape::Csv,
            (false, ExportFormat::Ndjson) => Shape::Row,
        }
    }

    /// The statement's bounds: after the last key sent, up to the range's end.
    fn bounds(&self) -> sql::Bounds<'_> {
        sql::Bounds {
            after: self.after.as_deref(),
            until: self.until.as_deref(),
        }
    }

    /// A range is done once its last key was sent (keys are unique): the common case, a range
    /// of `chunk_rows` rows, then takes one statement, not a second that finds nothing. Rows
    /// written into the range after its end was found make it longer: then `done` stays false
    /// and the range continues in further chunks.
    fn range_done(&mut self) {
        if self.until.is_some() && self.after == self.until {
            self.done = true;
        }
    }

    /// The export's end on `error`: no chunk after it. A table that changed under the route
    /// is read again before the next statement.
    fn fail(&mut self, error: PgError) -> Option<Result<Chunk, PgError>> {
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
    async fn next_copied(&mut self, running: &mut Running) -> Option<Result<Chunk, PgError>> {
        let resource = Arc::clone(&self.resource);
        let table = resource.table();
        let rows = self.rows_per_chunk;
        let statement = sql::select_within(
            table,
            &self.catalog,
            &self.columns,
            self.shape(),
            &self.filters,
            self.bounds(),
            rows,
        );
        // The header first, then the rows, in one buffer sized as the last chunk was.
        let mut out = BytesMut::with_capacity(self.capacity + self.capacity / 8);
        self.header(&mut out);
        let writer = &self.writer;
        let bound = usize::try_from(table.chunk_bytes).unwrap_or(usize::MAX);
        let copied = running
            .copy(&statement.sql, out, (rows as usize, bound), |row, out| {
                writer.push(row, out)
            })
            .await;
        let copied = match copied {
            Ok(copied) => copied,
            Err(error) => return self.fail(error),
        };
        self.served = true;
        self.done = !copied.cut && copied.rows < rows as usize;
        self.resize(copied.cut, copied.rows as u64, copied.bytes.len());
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
        self.range_done();
        let out = copied.bytes;
        self.capacity = out.len();
        if out.is_empty() && self.done {
            return None;
        }
        Some(Ok(Chunk {
            bytes: trimmed(out),
            rows: copied.rows as u64,
        }))
    }
}
