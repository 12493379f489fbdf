//! Statements whose output is read up to a byte bound ([`Running::each_row`],
//! [`Running::copy`]): an export chunk is held whole while the one before it is written, so it
//! ends after the row that reaches `chunk_bytes`, however wide the rows (a `jsonb` or `bytea`
//! column of megabytes). The statement is then left unfinished: dropping the [`Running`]
//! cancels it and closes its connection. Reading the rest on the same connection would not do:
//! the rows would still be produced and sent, and PostgreSQL holds a cancel that arrives after
//! the statement's end for the session's next statement, which it would fail. A statement
//! whose end has already arrived behind the row that reached the bound (its range's or table's
//! last row) is finished instead, and its connection kept.

use futures_util::{FutureExt as _, Stream, StreamExt as _};
use tokio_postgres::types::{ToSql, Type};

use super::{Running, pool};
use crate::table::{PgError, sql};

/// What one `COPY … TO STDOUT` gave.
#[derive(Debug, Default)]
pub(crate) struct Copied {
    /// Every row's bytes.
    pub(crate) bytes: bytes::BytesMut,
    /// Rows.
    pub(crate) rows: usize,
    /// The last row's bytes.
    pub(crate) last: bytes::Bytes,
    /// The bytes reached the bound before the statement's end: rows may follow, and the
    /// statement is left unfinished (see the module docs).
    pub(crate) cut: bool,
}

impl Running {
    /// Runs `statement`, handing each row to `take` as it comes until `take` says `false`
    /// (enough bytes held): then the statement is left unfinished (see the module docs), and
    /// `Ok(true)` says so. Prepared once per connection and kept in its bounded cache, or sent
    /// `unnamed` in one round trip (every parameter is text, cast in the statement), so no
    /// statement is left behind on the server session.
    pub(crate) async fn each_row(
        &mut self,
        statement: &sql::Statement,
        mut take: impl FnMut(tokio_postgres::Row) -> Result<bool, PgError>,
    ) -> Result<bool, PgError> {
        self.finished = false;
        let client = self.client.as_ref().ok_or(PgError::Unavailable)?;
        let params = statement.params.iter().map(|p| p as &(dyn ToSql + Sync));
        let stream = if self.unnamed {
            client
                .query_typed_raw(&statement.sql, params.map(|p| (p, Type::TEXT)))
                .await
        } else {
            if client.statement_cache.size() > pool::STATEMENT_CACHE {
                client.statement_cache.clear();
            }
            match client.prepare_cached(&statement.sql).await {
                Ok(prepared) => client.query_raw(&prepared, params).await,
                Err(error) => Err(error),
            }
        };
        let stream = match stream {
            Ok(stream) => stream,
            Err(error) => return Err(self.failed(&error)),
        };
        let mut stream = std::pin::pin!(stream);
        while let Some(row) = stream.next().await {
            let row = row.map_err(|error| self.failed(&error))?;
            if !take(row)? {
                if ended(&mut stream) {
                    break;
                }
                return Ok(true);
            }
        }
        self.finished = true;
        Ok(false)
    }

    /// Runs a `COPY … TO STDOUT` statement, collecting its output after what `out` holds
    /// (callers bound it with `LIMIT rows`) until it holds `bound` bytes before its last row,
    /// each row written out by `push` (false: not a row it can read): the bytes, the number of
    /// rows and the last row's bytes as PostgreSQL sent them (it sends each row as one
    /// message).
    pub(crate) async fn copy(
        &mut self,
        sql: &str,
        out: bytes::BytesMut,
        (rows, bound): (usize, usize),
        push: impl Fn(&[u8], &mut bytes::BytesMut) -> bool,
    ) -> Result<Copied, PgError> {
        self.finished = false;
        let client = self.client.as_ref().ok_or(PgError::Unavailable)?;
        let stream = match client.copy_out(sql).await {
            Ok(stream) => stream,
            Err(error) => return Err(self.failed(&error)),
        };
        let mut stream = std::pin::pin!(stream);
        let mut copied = Copied {
            bytes: out,
            ..Copied::default()
        };
        while let Some(row) = stream.next().await {
            let row = row.map_err(|error| self.failed(&error))?;
            if !push(&row, &mut copied.bytes) {
                tracing::error!(
                    route = &*self.ctx.route,
                    request_id = self.ctx.request.as_deref().unwrap_or("-"),
                    "a COPY row cannot be read: not UTF-8 (a SQL_ASCII database?) or not a CSV record of the export's columns"
                );
                return Err(PgError::Database);
            }
            copied.rows += 1;
            copied.last = row;
            if copied.bytes.len() >= bound && copied.rows < rows {
                if ended(&mut stream) {
                    break;
                }
                copied.cut = true;
                return Ok(copied);
            }
        }
        self.finished = true;
        Ok(copied)
    }
}

/// Whether `stream` has already ended: its end arrived with the rows before it (the server
/// sends a statement's last rows and its completion together), read without waiting. A row or
/// an error there, or nothing yet, is not an end.
fn ended<S: Stream + Unpin>(stream: &mut S) -> bool {
    matches!(stream.next().now_or_never(), Some(None))
}
