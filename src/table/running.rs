//! Statements in flight on pooled connections ([`Running`]): a page's rows, an export chunk's
//! rows or `COPY` output, cancelled when their caller goes away; and how database and pool
//! errors become [`PgError`]s.

use deadpool_postgres::Object;
use tokio_postgres::types::Type;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{Database, PgError, pool, sql};

mod bounded;

/// Who a statement runs for, named in every log line about it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ctx {
    /// The route.
    pub(crate) route: std::sync::Arc<str>,
    /// The request id (`x-request-id`), when the request has one.
    pub(crate) request: Option<String>,
}

/// Sorts a failed statement by its SQLSTATE, logging it with the route and request id:
/// - [`refuses_value`] codes (class 22, 23, 54): the database refused a value,
///   [`PgError::Rejected`], logged at debug: the caller finds which one
///   ([`super::Resource::blame`]), and when none alone is refused (22021 and 22P05 from stored
///   text UTF-8 cannot carry), answers 500;
/// - 57014 (a cancelled statement: `statement_timeout`): 504;
/// - 0A000 and class 42 (a cached plan, column, type or operator that changed under the route:
///   42703, 42804, 42883): [`PgError::Changed`]; the caller first rules out a client's value
///   (some types' input functions raise class 42 for bad text), then reads the table again;
/// - no SQLSTATE (the connection failed), and [`transient`] codes: 503;
/// - any other: a statement pagegate built that the database refused, 500, logged at ERROR.
pub(super) fn db_error(error: &tokio_postgres::Error, ctx: &Ctx) -> PgError {
    let (route, request) = (&*ctx.route, ctx.request.as_deref().unwrap_or("-"));
    let Some(db) = error.as_db_error() else {
        tracing::warn!(route, request_id = request, %error, "the database connection failed");
        return PgError::Unavailable;
    };
    sqlstate_error(db.code().code(), db.message(), ctx)
}

/// [`db_error`] of a database's answer.
pub(super) fn sqlstate_error(sqlstate: &str, message: &str, ctx: &Ctx) -> PgError {
    let (route, request) = (&*ctx.route, ctx.request.as_deref().unwrap_or("-"));
    match sqlstate {
        _ if refuses_value(sqlstate) => {
            tracing::debug!(
                route,
                request_id = request,
                sqlstate,
                message,
                "the database refused a value"
            );
            PgError::Rejected
        }
        "57014" => {
            tracing::warn!(
                route,
                request_id = request,
                sqlstate,
                message,
                "statement_timeout"
            );
            PgError::Timeout
        }
        // Statements were built from the columns read, and prepared by the check: a column,
        // type, operator or privilege the database no longer has is a table that changed.
        _ if sqlstate == "0A000" || sqlstate.starts_with("42") => {
            tracing::warn!(
                route,
                request_id = request,
                sqlstate,
                message,
                "the table may have changed under the route"
            );
            PgError::Changed
        }
        _ if transient(sqlstate) => {
            tracing::warn!(
                route,
                request_id = request,
                sqlstate,
                message,
                "the database cannot serve now"
            );
            PgError::Unavailable
        }
        _ => {
            tracing::error!(
                route,
                request_id = request,
                sqlstate,
                message,
                "the database refused a statement pagegate built"
            );
            PgError::Database
        }
    }
}

/// A SQLSTATE a client's value can cause: class 22 (data exception, 22021 and 22P05 text UTF-8
/// or the server's encoding cannot carry among them), 23 (a domain's `CHECK`), 54 (a program
/// limit: JSON nested past the stack).
pub(super) fn refuses_value(sqlstate: &str) -> bool {
    ["22", "23", "54"]
        .iter()
        .any(|class| sqlstate.starts_with(class))
}

/// A SQLSTATE that says the database cannot serve now, and may soon: a lost or refused
/// connection (08), no resources (53), shutting down (57P), a serialization failure or
/// deadlock (40001, 40P01: a read replica cancels a statement that conflicts with recovery), a
/// lock not available (55P03).
pub(crate) fn transient(sqlstate: &str) -> bool {
    ["08", "53", "57P", "40001", "40P01", "55P03"]
        .iter()
        .any(|prefix| sqlstate.starts_with(prefix))
}

pub(super) fn pool_error(error: &deadpool_postgres::PoolError, ctx: &Ctx) -> PgError {
    tracing::warn!(route = &*ctx.route, request_id = ctx.request.as_deref().unwrap_or("-"), %error, "no database connection");
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
    /// For the log.
    ctx: Ctx,
    /// The route's share of the pool, held while the statement runs.
    _share: Share,
}

/// A place in a route's share of its database's pool (`table.max_connections`).
pub(crate) type Share = tokio::sync::OwnedSemaphorePermit;

impl Running {
    /// A statement about to run on `client`, a connection of `database`'s taken in `share`.
    pub(crate) fn new(client: Object, share: Share, database: &Database, ctx: &Ctx) -> Self {
        let token = client.cancel_token();
        Self {
            client: Some(client),
            token,
            tls: database.tls().cloned(),
            unnamed: database.unnamed(),
            finished: false,
            ctx: ctx.clone(),
            _share: share,
        }
    }

    /// Sorts `error` ([`db_error`]). A statement the database answered with an error has
    /// ended: the connection goes back to the pool (no cancel), its cached statements dropped
    /// when the table may have changed under them.
    fn failed(&mut self, error: &tokio_postgres::Error) -> PgError {
        let sorted = db_error(error, &self.ctx);
        if error.as_db_error().is_some() {
            self.finished = true;
            if matches!(sorted, PgError::Changed)
                && let Some(client) = &self.client
            {
                client.statement_cache.clear();
            }
        }
        sorted
    }

    /// Runs `statement`, collecting every row (callers bound it with `LIMIT`), as
    /// [`Running::each_row`] runs it.
    pub(crate) async fn rows(
        &mut self,
        statement: &sql::Statement,
    ) -> Result<Vec<tokio_postgres::Row>, PgError> {
        let mut rows = Vec::new();
        self.each_row(statement, |row| {
            rows.push(row);
            Ok(true)
        })
        .await?;
        Ok(rows)
    }

    /// Runs `statement` (one client value cast as a statement casts it, see
    /// [`super::Resource::blame`]) unnamed, so nothing is left prepared: `Err(Some((SQLSTATE,
    /// message)))` when the database refuses it, `Err(None)` when it cannot be asked.
    pub(crate) async fn probe(
        &mut self,
        statement: &sql::Statement,
    ) -> Result<(), Option<(String, String)>> {
        let client = self.client.as_ref().ok_or(None)?;
        self.finished = false;
        let params: Vec<(&(dyn tokio_postgres::types::ToSql + Sync), Type)> = statement
            .params
            .iter()
            .map(|p| (p as &(dyn tokio_postgres::types::ToSql + Sync), Type::TEXT))
            .collect();
        let outcome = client.query_typed(&statement.sql, &params).await;
        let Err(error) = outcome else {
            self.finished = true;
            return Ok(());
        };
        let db = error.as_db_error().ok_or(None)?;
        self.finished = true;
        Err(Some((db.code().code().to_owned(), db.message().to_owned())))
    }
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
/// `SQL_ASCII` database) is logged and answered 500, never a panic.
pub(crate) fn value<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a tokio_postgres::Row,
    i: usize,
) -> Result<T, PgError> {
    row.try_get(i).map_err(|error| {
        tracing::error!(%error, "a value cannot be read (text that is not UTF-8, from a SQL_ASCII database?)");
        PgError::Database
    })
}

/// The key values of `row` (text, from column `first` on): a NULL there (a view's key, which
/// the catalog cannot check) is logged and answered 500, never a panic or a wrong cursor.
pub(crate) fn key_of(
    row: &tokio_postgres::Row,
    first: usize,
    len: usize,
) -> Result<Vec<String>, PgError> {
    (first..first + len)
        .map(|i| {
            row.try_get::<_, String>(i).map_err(|error| {
                tracing::error!(%error, "a key column is NULL (a view?): rows cannot be paged");
                PgError::Database
            })
        })
        .collect()
}
