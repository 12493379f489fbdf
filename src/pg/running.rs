//! Statements in flight on pooled connections ([`Running`]): a page's rows, an export chunk's
//! rows or `COPY` output, cancelled when their caller goes away; and how database and pool
//! errors become [`PgError`]s.

use deadpool_postgres::Object;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{Database, PgError, pool, sql};

/// Sorts a database error: a value PostgreSQL could not read is the client's (400), except
/// stored text that is not valid in UTF-8 (a `SQL_ASCII` database, or a character UTF-8 cannot
/// carry: client values are UTF-8 without NUL, so these are the database's); a cancelled
/// statement is a timeout (504), a lost connection is unavailability (503); anything else is
/// logged and answered 503 without detail.
pub(super) fn db_error(error: &tokio_postgres::Error) -> PgError {
    match error.code() {
        Some(code)
            if *code == SqlState::CHARACTER_NOT_IN_REPERTOIRE
                || *code == SqlState::UNTRANSLATABLE_CHARACTER =>
        {
            tracing::error!(%error, "stored text cannot be sent as UTF-8 (a SQL_ASCII database?)");
            PgError::Unavailable
        }
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
    /// The database's TLS: a cancel request opens a connection of its own, which must speak it.
    tls: Option<MakeRustlsConnect>,
    /// Statements are sent unnamed (`prepared_statements: unnamed`).
    unnamed: bool,
    finished: bool,
}

impl Running {
    /// A statement about to run on `client`, a connection of `database`'s.
    pub(crate) fn new(client: Object, database: &Database) -> Self {
        let token = client.cancel_token();
        Self {
            client: Some(client),
            token,
            tls: database.tls().cloned(),
            unnamed: database.unnamed(),
            finished: false,
        }
    }

    /// Runs `statement`, collecting every row (callers bound it with `LIMIT`): prepared once
    /// per connection and kept in its bounded cache, or sent `unnamed` (every parameter is
    /// text, cast in the statement).
    pub(crate) async fn rows(
        mut self,
        statement: &sql::Statement,
    ) -> Result<Vec<tokio_postgres::Row>, PgError> {
        let client = self.client.as_ref().ok_or(PgError::Unavailable)?;
        let rows = if self.unnamed {
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

    /// Runs a `COPY … TO STDOUT` statement, collecting its output after what `out` holds
    /// (callers bound it with `LIMIT`), each row written out by `push` (false: not a row it can read): the bytes, the
    /// number of rows and the last row's bytes as PostgreSQL sent them (it sends each row as one
    /// message).
    pub(crate) async fn copy(
        mut self,
        sql: &str,
        out: bytes::BytesMut,
        push: impl Fn(&[u8], &mut bytes::BytesMut) -> bool,
    ) -> Result<Copied, PgError> {
        use futures_util::StreamExt as _;
        let client = self.client.as_ref().ok_or(PgError::Unavailable)?;
        let stream = client.copy_out(sql).await.map_err(|e| db_error(&e))?;
        let mut stream = std::pin::pin!(stream);
        let mut copied = Copied {
            bytes: out,
            ..Copied::default()
        };
        while let Some(row) = stream.next().await {
            let row = row.map_err(|e| db_error(&e))?;
            if !push(&row, &mut copied.bytes) {
                tracing::error!(
                    "a COPY row cannot be read: not UTF-8 (a SQL_ASCII database?) or not a CSV record of the export's columns"
                );
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
        let tls = self.tls.take();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let cancelled = match tls {
                    None => token.cancel_query(tokio_postgres::NoTls).await,
                    Some(tls) => token.cancel_query(tls).await,
                };
                if let Err(error) = cancelled {
                    tracing::warn!(%error, "could not cancel a statement whose client left; it runs until statement_timeout");
                }
            });
        }
        if let Some(client) = self.client.take() {
            drop(Object::take(client));
        }
    }
}

/// Value `i` of `row`: one that does not read as `T` (text that is not UTF-8, from a
/// `SQL_ASCII` database) is logged and answered 503, never a panic.
pub(crate) fn value<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a tokio_postgres::Row,
    i: usize,
) -> Result<T, PgError> {
    row.try_get(i).map_err(|error| {
        tracing::error!(%error, "a value cannot be read (text that is not UTF-8, from a SQL_ASCII database?)");
        PgError::Unavailable
    })
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
