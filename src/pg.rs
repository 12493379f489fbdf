//! The PostgreSQL query service: routes whose terminal is a table or view ([`TableService`]).
//!
//! `GET <path>?fields=a,b&<column>=<op>.<value>&limit=N&cursor=…` answers
//! `{"data":[…],"next_cursor":"…"}` with `Link: rel="next"`: one keyset query of `limit + 1`
//! rows (the extra row says whether a next page exists), its cost the same at any depth.
//! `GET <path>/export?format=csv|ndjson&<filters>&after=<key>` streams every matching row as a
//! sequence of short keyset queries of `chunk_rows` rows each ([`export`]).
//!
//! Every client value reaches PostgreSQL as a bind parameter ([`sql`]), except in CSV exports
//! made by `COPY`, which takes none: there values are literals pagegate writes, hex-encoded when
//! they hold a quote, a backslash or a NUL ([`sql::inline`]). Fields, filters and operators are
//! checked against the config's allow-lists first. A table is checked against
//! the catalog ([`catalog`]) before it is served; while its database is unreachable its route
//! answers 503 and the check runs again when it comes back.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use deadpool_postgres::Object;
use futures_util::future::BoxFuture;
use http::{HeaderValue, Method, StatusCode, header};
use serde_json::value::RawValue;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tower::Service;

use crate::config::{ExportFormat, FilterOp, TableConfig};
use crate::cursor::{CursorCodec, CursorError, binding_hash, route_id};
use crate::{BoxError, Request, Response};

mod catalog;
mod csv;
mod export;
mod ndjson;
mod pool;
mod sql;

pub use catalog::{Catalog, CheckError, index_hint};
pub use pool::{Database, SetupError};
use sql::{Filter, Shape};

/// Most filters one request may carry.
const MAX_FILTERS: usize = 32;
/// After a check found the database unreachable, how long until the next request tries again.
const RETRY_UNREACHABLE: Duration = Duration::from_secs(1);
/// After a check found the table unfit, how long until it is checked again.
const RETRY_INVALID: Duration = Duration::from_secs(30);

/// Why a table request was not served.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// A parameter is unknown, repeated or malformed; the message lists what is allowed.
    #[error("{0}")]
    BadRequest(String),
    /// A value does not fit its column's type (PostgreSQL said so).
    #[error("a value does not fit its column's type: {0}")]
    BadValue(String),
    /// The cursor does not verify.
    #[error(transparent)]
    Cursor(#[from] CursorError),
    /// Only GET and HEAD read a table.
    #[error("method {0} is not allowed here: table routes answer GET and HEAD")]
    Method(Method),
    /// The database cannot be reached, or has no free connection in time.
    #[error("the database is unavailable; retry shortly")]
    Unavailable,
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
}

impl PgError {
    /// Its status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) | Self::BadValue(_) | Self::Cursor(_) => StatusCode::BAD_REQUEST,
            Self::Method(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::ScopeRequired(_) => StatusCode::FORBIDDEN,
            Self::Unavailable | Self::OutOfService => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// Its problem type.
    pub fn problem_type(&self) -> &'static str {
        match self {
            Self::BadRequest(_) | Self::BadValue(_) => "urn:pagegate:problem:invalid-query",
            Self::Cursor(_) => "urn:pagegate:problem:invalid-cursor",
            Self::Method(_) => "urn:pagegate:problem:method-not-allowed",
            Self::ScopeRequired(_) => "urn:pagegate:problem:scope-required",
            Self::Unavailable | Self::OutOfService => "urn:pagegate:problem:database-unavailable",
            Self::Timeout => "urn:pagegate:problem:database-timeout",
        }
    }
}

/// Sorts a database error: a value PostgreSQL could not read is the client's (400), a
/// cancelled statement is a timeout (504), a lost connection is unavailability (503); anything
/// else is logged and answered 503 without detail.
fn db_error(error: &tokio_postgres::Error) -> PgError {
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

fn pool_error(error: &deadpool_postgres::PoolError) -> PgError {
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

/// Whether a resource may be served now.
#[derive(Debug)]
enum State {
    /// Not yet checked, or the database was unreachable at the last try.
    Unchecked { tried: Option<Instant> },
    /// Checked and fit.
    Ready(Arc<Catalog>),
    /// Checked and unfit: out of service until a later check passes.
    Unfit { tried: Instant },
}

/// One table route's resource: its table, database, cursor codec and check state.
#[derive(Debug)]
pub struct Resource {
    route: String,
    path: String,
    route_id: u64,
    table: Arc<TableConfig>,
    database: Arc<Database>,
    codec: Arc<CursorCodec>,
    state: Mutex<State>,
    /// One check at a time: requests that find a check due wait for the one running.
    checking: tokio::sync::Mutex<()>,
}

impl Resource {
    /// The resource of route `route`.
    pub fn new(
        route: &str,
        path: &str,
        table: Arc<TableConfig>,
        database: Arc<Database>,
        codec: Arc<CursorCodec>,
    ) -> Arc<Self> {
        Arc::new(Self {
            route: route.to_owned(),
            path: path.to_owned(),
            route_id: route_id(route),
            table,
            database,
            codec,
            state: Mutex::new(State::Unchecked { tried: None }),
            checking: tokio::sync::Mutex::new(()),
        })
    }

    /// The table's config.
    pub fn table(&self) -> &Arc<TableConfig> {
        &self.table
    }

    /// The route's path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The route's name.
    pub fn route(&self) -> &str {
        &self.route
    }

    /// The database.
    pub fn database(&self) -> &Arc<Database> {
        &self.database
    }

    /// The cursor codec.
    pub fn codec(&self) -> &Arc<CursorCodec> {
        &self.codec
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Checks the table against the catalog now, recording the outcome.
    pub async fn check(&self) -> Result<Arc<Catalog>, CheckError> {
        let outcome = match self.database.pool().get().await {
            Ok(mut client) => catalog::check(&mut client, &self.table).await.map(Arc::new),
            Err(error) => Err(CheckError::Unreachable(error.to_string())),
        };
        let now = Instant::now();
        let mut state = self.lock();
        match &outcome {
            Ok(catalog) => *state = State::Ready(Arc::clone(catalog)),
            Err(CheckError::Unreachable(_)) => *state = State::Unchecked { tried: Some(now) },
            Err(CheckError::Invalid(reason)) => {
                if !matches!(*state, State::Unfit { .. }) {
                    tracing::error!(route = %self.route, table = %self.table.name, %reason, "resource out of service");
                }
                *state = State::Unfit { tried: now };
            }
        }
        outcome
    }

    /// The checked catalog, checking first when due.
    async fn ready(&self) -> Result<Arc<Catalog>, PgError> {
        if let State::Ready(catalog) = &*self.lock() {
            return Ok(Arc::clone(catalog));
        }
        let _checking = self.checking.lock().await;
        let due = match &*self.lock() {
            State::Ready(catalog) => return Ok(Arc::clone(catalog)),
            State::Unchecked { tried } => tried.is_none_or(|t| t.elapsed() >= RETRY_UNREACHABLE),
            State::Unfit { tried } => tried.elapsed() >= RETRY_INVALID,
        };
        if !due {
            return Err(if matches!(&*self.lock(), State::Unfit { .. }) {
                PgError::OutOfService
            } else {
                PgError::Unavailable
            });
        }
        match self.check().await {
            Ok(catalog) => Ok(catalog),
            Err(CheckError::Unreachable(_)) => Err(PgError::Unavailable),
            Err(CheckError::Invalid(_)) => Err(PgError::OutOfService),
        }
    }
}

/// A request's parameters, checked against the table's allow-lists.
#[derive(Debug, Default)]
struct Params {
    fields: Option<Vec<String>>,
    filters: Vec<Filter>,
    limit: Option<u32>,
    cursor: Option<String>,
    format: Option<ExportFormat>,
    after: Option<Vec<String>>,
    /// The raw `name=value` pieces cursors are bound to (all but `cursor` and `limit`).
    binding: Vec<String>,
    /// The raw pieces a next-page link repeats (all but `cursor`).
    kept: Vec<String>,
}

fn allowed(table: &TableConfig) -> String {
    let filters: Vec<String> = table
        .filters
        .iter()
        .map(|(c, ops)| {
            format!(
                "{c} ({})",
                ops.iter().map(|o| o.name()).collect::<Vec<_>>().join(", ")
            )
        })
        .collect();
    format!(
        "fields (any of {}), limit (1 to {}), cursor, format and after on exports, and filters: {}",
        table.columns.join(", "),
        table.max_limit,
        if filters.is_empty() {
            "none".to_owned()
        } else {
            filters.join("; ")
        }
    )
}

fn parse(table: &TableConfig, query: &str, export: bool) -> Result<Params, PgError> {
    let bad =
        |what: String| PgError::BadRequest(format!("{what}; this route takes {}", allowed(table)));
    let mut params = Params::default();
    let mut seen = BTreeSet::new();
    for piece in query.split('&').filter(|p| !p.is_empty()) {
        let (raw_name, raw_value) = piece.split_once('=').unwrap_or((piece, ""));
        // Percent-decoding only: `+` stays a plus (`created_at=gte.2026-01-01T00:00:00+02:00`).
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let (name, value) = (decode(raw_name), decode(raw_value));
        let reserved = matches!(
            name.as_str(),
            "fields" | "limit" | "cursor" | "format" | "after"
        );
        if reserved && !seen.insert(name.clone()) {
            return Err(bad(format!("`{name}` is given twice")));
        }
        if name != "cursor" {
            params.kept.push(piece.to_owned());
            if name != "limit" {
                params.binding.push(piece.to_owned());
            }
        }
        match name.as_str() {
            "fields" => {
                let mut fields = Vec::new();
                for f in value.split(',') {
                    if !table.columns.iter().any(|c| c == f) {
                        return Err(bad(format!(
                            "`fields` names {f:?}, which is not a field of this route"
                        )));
                    }
                    if !fields.iter().any(|x: &String| x == f) {
                        fields.push(f.to_owned());
                    }
                }
                params.fields = Some(fields);
            }
            "limit" if !export => {
                let limit = value.parse::<u32>().ok().filter(|n| {
                    (1..=table.max_limit).contains(n) && value.bytes().all(|b| b.is_ascii_digit())
                });
                params.limit = Some(limit.ok_or_else(|| {
                    bad(format!(
                        "`limit` is {value:?}: write a whole number from 1 to {}",
                        table.max_limit
                    ))
                })?);
            }
            "cursor" if !export => params.cursor = Some(value),
            "format" if export => {
                let format = match value.as_str() {
                    "csv" => ExportFormat::Csv,
                    "ndjson" => ExportFormat::Ndjson,
                    _ => return Err(bad(format!("`format` is {value:?}: write csv or ndjson"))),
                };
                if !table.formats.contains(&format) {
                    return Err(bad(format!(
                        "`format` {value} is not offered by this route"
                    )));
                }
                params.format = Some(format);
            }
            "after" if export => {
                let values: Vec<String> = value.split(',').map(str::to_owned).collect();
                if values.len() != table.key.len() || values.iter().any(String::is_empty) {
                    let key: Vec<&str> = table.key.iter().map(|k| k.column.as_str()).collect();
                    return Err(bad(format!(
                        "`after` is {value:?}: write the key of the last row received, {} value(s) comma-separated ({})",
                        key.len(),
                        key.join(", ")
                    )));
                }
                params.after = Some(values);
            }
            _ if reserved => {
                return Err(bad(format!(
                    "`{name}` does not apply to {}",
                    if export { "exports" } else { "pages" }
                )));
            }
            column => {
                let Some(ops) = table.filters.get(column) else {
                    return Err(bad(format!(
                        "`{column}` is not a parameter or filter of this route"
                    )));
                };
                let Some((op, operand)) = value.split_once('.') else {
                    return Err(bad(format!(
                        "the filter `{column}` is {value:?}: write {column}=OP.VALUE, such as {column}=eq.1"
                    )));
                };
                let op = FilterOp::parse(op).filter(|op| ops.contains(op)).ok_or_else(|| {
                    bad(format!("the filter `{column}` has operator {op:?}, which this route does not allow on it"))
                })?;
                if op == FilterOp::Is && !matches!(operand, "null" | "not_null") {
                    return Err(bad(format!(
                        "the filter `{column}` is {value:?}: `is` takes null or not_null"
                    )));
                }
                if params.filters.len() == MAX_FILTERS {
                    return Err(bad(format!("more than {MAX_FILTERS} filters")));
                }
                params.filters.push(Filter {
                    column: column.to_owned(),
                    op,
                    value: operand.to_owned(),
                });
            }
        }
    }
    Ok(params)
}

/// The terminal of a table route: its pages, or (`export`) its export.
#[derive(Debug, Clone)]
pub struct TableService {
    resource: Arc<Resource>,
    export: bool,
}

impl TableService {
    /// Serves `resource`'s pages, or its export.
    pub fn new(resource: Arc<Resource>, export: bool) -> Self {
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
        let (resource, export) = (Arc::clone(&self.resource), self.export);
        Box::pin(async move { serve(&resource, &req, export).await.map_err(BoxError::from) })
    }
}

async fn serve(resource: &Arc<Resource>, req: &Request, export: bool) -> Result<Response, PgError> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Err(PgError::Method(req.method().clone()));
    }
    let table = Arc::clone(&resource.table);
    let mut params = parse(&table, req.uri().query().unwrap_or(""), export)?;
    // Cursors are bound to the table and its key as well: a reload that changes the key's
    // columns or directions invalidates them instead of resuming in the wrong place.
    let key: Vec<String> = table
        .key
        .iter()
        .map(|k| format!("{}{}", if k.descending { "-" } else { "" }, k.column))
        .collect();
    params
        .binding
        .push(format!("table:{}:{}", table.name, key.join(",")));
    if let Some(scope) = &table.scope {
        // Exactly one value: a repeated header is ambiguous (which one did the auth layer set?).
        let mut values = req.headers().get_all(&scope.header).iter();
        let value = match (values.next(), values.next()) {
            (Some(value), None) => value.to_str().ok().filter(|v| !v.is_empty()),
            _ => None,
        };
        let value = value.ok_or_else(|| PgError::ScopeRequired(scope.header.clone()))?;
        // First, and bound into cursors: one scope's cursor never pages another's rows.
        params.filters.insert(
            0,
            Filter {
                column: scope.column.clone(),
                op: FilterOp::Eq,
                value: value.to_owned(),
            },
        );
        params.binding.push(format!("scope:{value}"));
    }
    let catalog = resource.ready().await?;
    if export {
        return export::response(
            resource,
            catalog,
            params.fields,
            params.filters,
            params.after,
            params.format,
        )
        .await;
    }
    page(resource, &catalog, req.uri().path(), params).await
}

async fn page(
    resource: &Resource,
    catalog: &Catalog,
    path: &str,
    params: Params,
) -> Result<Response, PgError> {
    let table = &resource.table;
    let binding = binding_hash(params.binding.iter().map(String::as_str));
    let after = match &params.cursor {
        None => None,
        Some(cursor) => {
            let values = resource.codec.decode(
                cursor,
                resource.route_id,
                binding,
                table.key.len(),
                SystemTime::now(),
            )?;
            let texts = values
                .iter()
                .map(|v| {
                    serde_json::from_str::<String>(v.get()).map_err(|_| CursorError::WrongFilters)
                })
                .collect::<Result<Vec<String>, CursorError>>()?;
            Some(texts)
        }
    };
    let limit = params.limit.unwrap_or(table.default_limit);
    let fields = params
        .fields
        .unwrap_or_else(|| table.default_fields.clone());
    let statement = sql::select(
        table,
        catalog,
        &fields,
        Shape::Json,
        &params.filters,
        after.as_deref(),
        limit + 1,
    );
    let client = resource
        .database
        .pool()
        .get()
        .await
        .map_err(|e| pool_error(&e))?;
    let mut rows = Running::new(client)
        .rows(&statement, resource.database.unnamed())
        .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let mut body = String::from("{\"data\":[");
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(row.get::<_, &str>(0));
    }
    body.push_str("],\"next_cursor\":");
    let mut link = None;
    match rows.last().filter(|_| more) {
        Some(last) => {
            let key = key_of(last, 1, table.key.len())?;
            let raw: Vec<Box<RawValue>> = key
                .iter()
                .filter_map(|k| {
                    serde_json::to_string(k)
                        .ok()
                        .and_then(|s| RawValue::from_string(s).ok())
                })
                .collect();
            let refs: Vec<&RawValue> = raw.iter().map(AsRef::as_ref).collect();
            let cursor =
                resource
                    .codec
                    .encode(resource.route_id, binding, &refs, SystemTime::now());
            body.push_str(&serde_json::to_string(&cursor).unwrap_or_else(|_| "null".to_owned()));
            let mut query = params.kept.clone();
            query.push(format!("cursor={cursor}"));
            link =
                HeaderValue::from_str(&format!("<{path}?{}>; rel=\"next\"", query.join("&"))).ok();
        }
        None => body.push_str("null"),
    }
    body.push('}');
    let mut response = http::Response::new(crate::body::full(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(link) = link {
        headers.insert(header::LINK, link);
    }
    Ok(response)
}
