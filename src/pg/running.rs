//! Statements in flight on pooled connections ([`Running`]): a page's rows, an export chunk's
//! rows or `COPY` output, cancelled when their caller goes away; and how database and pool
//! errors become [`PgError`]s.

use deadpool_postgres::Object;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;

use super::{PgError, pool, sql};

/// Sorts a database error: a value PostgreSQL could not read is the client's (400), a
/// cancelled statement is a timeout (504), a lost connection is unavailability (503); anything
/// else is logged and answered 503 without detail.
pub(super) fn db_error(error: &tokio_postgres::Error) -> PgError {
    match error.code() {
        Some(code) if code.code().starts_with("22") => {
            let message = error
                .as_db_error()
                .map_or_else(|| code.code().to_owned(), |e| e.message().to_owned());
            PgError::BadValue(message)
        }
        Some(code) if *code == SqlState::QUERY_CANCELED => PgError::Timeout,
        _ => {
            tracing::warn!(%error, "database error");
            PgError::Unavailable
        }
    }
}

pub(super) fn pool_error(error: &deadpool_postgres::PoolError) -> PgError {
    tracing::warn!(%error, "no database connection");
    PgError::Unavailable
}

/// A statement in flight on a pooled connection: dropped before it finished (the client went
/// away), it cancels the statement and closes the connection instead of pooling one that is
/// still draining rows.
pub(crate) struct Running {
    client: Option<Object>,
    token: tokio_postgres::CancelToken,
    finished: bool,
}

impl Running {
    pub(crate) fn new(client: Object) -> Self {
        let token = client.cancel_token();
        Self {
            client: Some(client),
            token,
            finished: false,
        }
    }

    /// Runs `statement`, collecting every row (callers bound it with `LIMIT`): prepared once
    /// per connection and kept in its bounded cache, or sent `unnamed` (every parameter is
    /// text, cast in the statement).
    pub(crate) async fn rows(
        mut self,
        statement: &sql::Statement,
        unnamed: bool,
    ) -> Result<Vec<tokio_postgres::Row>, PgError> {
        let client = self.client.as_ref().ok_or(PgError::Unavailable)?;
        let rows = if unnamed {
            // One round trip, no statement left behind on the server session.
            let params: Vec<(&(dyn tokio_postgres::types::ToSql + Sync), Type)> = statement
                .params
                .iter()
                .map(|p| (p as &(dyn tokio_postgres::types::ToSql + Sync), Type::TEXT))
                .collect();
            client.query_typed(&statement.sql, &params).await
        } else {
            if client.statement_cache.size() > pool::STATEMENT_CACHE {
                client.statement_cache.clear();
            }
            let prepared = client
                .prepare_cached(&statement.sql)
                .await
                .map_err(|e| db_error(&e))?;
            let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = statement
                .params
                .iter()
                .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
                .collect();
            client.query(&prepared, &params).await
        }
        .map_err(|e| db_error(&e));
        self.finished = true;
        rows
    }

    /// Runs a `COPY … TO STDOUT` statement, collecting its output (callers bound it with
    /// `LIMIT`), each row written out by `push` (false: not a row it can read): the bytes, the
    /// number of rows and the last row's bytes as PostgreSQL sent them (it sends each row as one
    /// message).
    pub(crate) async fn copy(
        mut self,
        sql: &str,
        push: impl Fn(&[u8], &mut bytes::BytesMut) -> bool,
    ) -> Result<Copied, PgError> {
        use futures_util::StreamExt as _;
        let client = self.client.as_ref().ok_or(PgError::Unavailable)?;
        let stream = client.copy_out(sql).await.map_err(|e| db_error(&e))?;
        let mut stream = std::pin::pin!(stream);
        let mut copied = Copied::default();
        while let Some(row) = stream.next().await {
            let row = row.map_err(|e| db_error(&e))?;
            if !push(&row, &mut copied.bytes) {
                tracing::error!("a COPY row is not a CSV record of the export's columns");
                return Err(PgError::Unavailable);
            }
            copied.rows += 1;
            copied.last = row;
        }
        self.finished = true;
        Ok(copied)
    }
}

/// What one `COPY … TO STDOUT` gave.
#[derive(Debug, Default)]
pub(crate) struct Copied {
    /// Every row's bytes.
    pub(crate) bytes: bytes::BytesMut,
    /// Rows.
    pub(crate) rows: usize,
    /// The last row's bytes.
    pub(crate) last: bytes::Bytes,
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let token = self.token.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = token.cancel_query(tokio_postgres::NoTls).await;
            });
        }
        if let Some(client) = self.client.take() {
            drop(Object::take(client));
        }
    }
}

/// The key values of `row` (text, from column `first` on): a NULL there (a view's key, which
/// the catalog cannot check) is logged and answered 503, never a panic or a wrong cursor.
pub(crate) fn key_of(
    row: &tokio_postgres::Row,
    first: usize,
    len: usize,
) -> Result<Vec<String>, PgError> {
    (first..first + len)
        .map(|i| {
            row.try_get::<_, String>(i).map_err(|error| {
                tracing::error!(%error, "a key column is NULL (a view?): rows cannot be paged");
                PgError::Unavailable
            })
        })
        .collect()
}
