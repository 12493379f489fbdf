//! The PostgreSQL query service: routes whose terminal is a table or view ([`TableService`]).
//!
//! `GET <path>?fields=a,b&<column>=<op>.<value>&limit=N&cursor=…` answers
//! `{"data":[…],"next_cursor":"…"}` with `Link: rel="next"`: one keyset query of `limit + 1`
//! rows (the extra row says whether a next page exists), its cost the same at any depth.
//! `GET <path>/export?format=csv|ndjson&<filters>&after=<key>` streams every matching row as a
//! sequence of short keyset queries of `chunk_rows` rows each (`export`).
//!
//! Every client value reaches PostgreSQL as a bind parameter (`sql`), except in exports
//! read with `COPY`, which takes none: there values are literals pagegate writes, hex-encoded
//! when they hold a quote, a backslash or a NUL (`sql::values::literal`). Fields, filters and
//! operators are checked against the config's allow-lists first (`params`). A table is checked against
//! the catalog (`catalog`) before it is served; while its database is unreachable its route
//! answers 503 and the check runs again when it comes back.

use crate::telemetry::ExportCounters;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use http::Method;
use tower::Service;

use crate::cursor::CursorError;
use crate::table::config::{FilterOp, ScopeSource};
use crate::telemetry::TraceCx;
use crate::{BoxError, Request, Response};

mod catalog;
pub(crate) mod config;
mod csv;
mod export;
mod ndjson;
mod page;
mod params;
mod pool;
mod resource;
mod running;
mod sql;

pub(crate) use catalog::{Catalog, CheckError};
use params::parse;
pub(crate) use pool::{Database, SetupError};
use resource::Offered;
pub(crate) use resource::Resource;
use running::Running;
use sql::Filter;

/// After a check found the database unreachable, how long until the next request tries again.
pub(crate) const RETRY_UNREACHABLE: Duration = Duration::from_secs(1);
/// After a check found the table unfit, how long until it is checked again.
pub(crate) const RETRY_INVALID: Duration = Duration::from_secs(30);

/// Why a table request was not served; `crate::proxy::rescue` answers it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PgError {
    /// A parameter is unknown, repeated or malformed; the message lists what is allowed.
    #[error("{0}")]
    BadRequest(String),
    /// The database refused a client's value (SQLSTATE class 22, 23 or 54): which one, and
    /// PostgreSQL's reason, which names no SQL.
    #[error("{parameter} was refused by the database: {message}")]
    BadValue {
        /// The parameter, as the client wrote it (`amount=gte.x`, `after`, the scope header).
        parameter: String,
        /// PostgreSQL's message.
        message: String,
    },
    /// The database refused a value, before pagegate found which (`Resource::blame`).
    #[error("a value does not fit its column's type")]
    Rejected,
    /// The cursor does not verify.
    #[error(transparent)]
    Cursor(#[from] CursorError),
    /// `<path>/export` on a route whose `export.formats` is empty: exports are off (404).
    #[error("this route offers no export")]
    NoExport,
    /// Only GET and HEAD read a table.
    #[error("method {0} is not allowed here: table routes answer GET and HEAD")]
    Method(Method),
    /// The database cannot be reached, or has no free connection (for this route) in time.
    #[error("the database is unavailable; retry shortly")]
    Unavailable,
    /// The table changed under the route (a statement failed with 0A000 or a class 42 code,
    /// such as 42703 or 42804): its columns are read again before the next statement.
    #[error("the table changed under this route; its columns are being read again: retry shortly")]
    Changed,
    /// A statement ran past `statement_timeout`.
    #[error("the database did not answer within statement_timeout")]
    Timeout,
    /// The table failed its check against the catalog (the reason is logged).
    #[error("this resource is out of service")]
    OutOfService,
    /// A scoped table's request lacks its scope header (or repeats it).
    #[error(
        "this resource needs exactly one {0} header, set by the authentication in front of pagegate"
    )]
    ScopeRequired(http::HeaderName),
    /// A page's next key is longer than a cursor carries: no next link can be offered.
    #[error(
        "the next page's key (`{column}`) is longer than a cursor carries ({bound} bytes of key values): the rows past this page cannot be reached by cursor; page by a shorter key"
    )]
    KeyTooLong {
        /// The key column whose value is longest.
        column: String,
        /// [`crate::cursor::MAX_KEY_JSON_LEN`].
        bound: usize,
    },
    /// The database failed a statement pagegate built, or sent what pagegate cannot read (the
    /// SQLSTATE and message are logged).
    #[error("the database could not answer this request; the reason is logged")]
    Database,
}

/// The terminal of a table route: its pages, or (`export`) its export.
#[derive(Debug, Clone)]
pub(crate) struct TableService {
    resource: Arc<Resource>,
    /// On the export path: the counters of its rows and cut chunks.
    export: Option<ExportCounters>,
}

impl TableService {
    /// Serves `resource`'s pages, or its export (`export`: counting its rows there).
    pub(crate) fn new(resource: Arc<Resource>, export: Option<ExportCounters>) -> Self {
        Self { resource, export }
    }
}

impl Service<Request> for TableService {
    type Response = Response;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Response, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let (resource, export) = (Arc::clone(&self.resource), self.export.clone());
        // Rows (`limits.quota.rows`, the service's `cost.response: rows`) are checked and
        // spent by exports alone.
        let quota = export
            .as_ref()
            .and_then(|_| req.extensions().get::<crate::limit::Charge>().cloned());
        if let Some(quota) = &quota
            && let Err(spent) = quota.admit(crate::limit::config::QuotaUnit::Rows)
        {
            return Box::pin(std::future::ready(Err(BoxError::from(spent))));
        }
        let export = export.map(|rows| (rows, quota));
        // Tracing on: a span for the statements, until the answer's head (an export's rows
        // stream on under the server span).
        let span = req
            .extensions()
            .get::<TraceCx>()
            .map(|cx| cx.database(&resource.table().name, export.is_some()));
        Box::pin(async move {
            let answer = serve(&resource, &req, export).await;
            if let (Some(span), Err(error)) = (&span, &answer) {
                span.failed(error.to_string());
            }
            answer.map_err(BoxError::from)
        })
    }
}

/// A scoped table's value for this request: its one header value, or its verified claim (the
/// identity gate in front refused a request without it).
fn scope_value(
    scope: &config::Scope,
    req: &Request,
) -> Result<(String, resource::Source), PgError> {
    match &scope.from {
        ScopeSource::Header(name) => {
            let value = crate::client_addr::single_header(req.headers(), name);
            let value = value.and_then(|v| v.to_str().ok());
            let value = value.ok_or_else(|| PgError::ScopeRequired(name.clone()))?;
            Ok((value.to_owned(), resource::Source::Header(name.clone())))
        }
        ScopeSource::Claim { claim, identity } => {
            let verified = req.extensions().get::<crate::identity::Verified>();
            let value = verified.and_then(|v| v.claim(claim));
            let value = value.ok_or_else(|| PgError::ScopeRequired(identity.header.clone()))?;
            Ok((value.into_owned(), resource::Source::Claim(claim.clone())))
        }
    }
}

async fn serve(
    resource: &Arc<Resource>,
    req: &Request,
    export: Option<(ExportCounters, Option<crate::limit::Charge>)>,
) -> Result<Response, PgError> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Err(PgError::Method(req.method().clone()));
    }
    let table = Arc::clone(resource.table());
    if export.is_some() && table.formats.is_empty() {
        return Err(PgError::NoExport);
    }
    let mut params = parse(&table, req.uri().query().unwrap_or(""), export.is_some())?;
    // Cursors are bound to the table and its key as well: a reload that changes the key's
    // columns or directions invalidates them instead of resuming in the wrong place.
    let key: Vec<String> = table
        .key
        .iter()
        .map(|k| format!("{}{}", if k.descending { "-" } else { "" }, k.column))
        .collect();
    params
        .bound
        .push(format!("table:{}:{}", table.name, key.join(",")));
    if let Some(scope) = &table.scope {
        let (value, source) = scope_value(scope, req)?;
        let value = value.as_str();
        // First, and bound into cursors: one scope's cursor never pages another's rows.
        params.filters.insert(
            0,
            Filter {
                column: scope.column.clone(),
                op: FilterOp::Eq,
                values: vec![value.to_owned()],
            },
        );
        params.offered.push(Offered {
            source,
            column: scope.column.clone(),
            value: value.to_owned(),
        });
        params.bound.push(format!("scope:{value}"));
    }
    let catalog = resource.ready().await?;
    params::refuse_nul_escapes(&params.offered, &catalog)?;
    let ctx = resource.ctx(req);
    if let Some(rows) = export {
        return export::response(resource, catalog, params, &ctx, rows).await;
    }
    page::page(resource, &catalog, req.uri().path(), params, &ctx).await
}
