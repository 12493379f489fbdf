//! The PostgreSQL query service: routes whose terminal is a table or view ([`TableService`]).
//!
//! `GET <path>?fields=a,b&<column>=<op>.<value>&limit=N&cursor=…` answers
//! `{"data":[…],"next_cursor":"…"}` with `Link: rel="next"`: one keyset query of `limit + 1`
//! rows (the extra row says whether a next page exists), its cost the same at any depth.
//! `GET <path>/export?format=csv|ndjson&<filters>&after=<key>` streams every matching row as a
//! sequence of short keyset queries of `chunk_rows` rows each ([`export`]).
//!
//! Every client value reaches PostgreSQL as a bind parameter ([`sql`]), except in exports
//! read with `COPY`, which takes none: there values are literals pagegate writes, hex-encoded
//! when they hold a quote, a backslash or a NUL ([`sql::inline`]). Fields, filters and
//! operators are checked against the config's allow-lists first ([`params`]). A table is checked against
//! the catalog ([`catalog`]) before it is served; while its database is unreachable its route
//! answers 503 and the check runs again when it comes back.

use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use futures_util::future::BoxFuture;
use http::{HeaderValue, Method, StatusCode, header};
use serde_json::value::RawValue;
use tower::Service;

use crate::config::{FilterOp, TableConfig};
use crate::cursor::{CursorCodec, CursorError, binding_hash, route_id};
use crate::{BoxError, Request, Response};

mod catalog;
mod csv;
mod export;
mod ndjson;
mod params;
mod pool;
mod running;
mod sql;

pub use catalog::{Catalog, CheckError, index_hint};
use params::{Params, parse};
pub use pool::{Database, SetupError};
use running::{Running, key_of, pool_error};
use sql::{Filter, Shape};

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
        let outcome = match (outcome, self.database.replica_pool()) {
            (Ok(catalog), Some(replica)) => self.check_replica(replica, catalog).await,
            (outcome, _) => outcome,
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

    /// The replica the exports read holds the table as the primary does: the same checks,
    /// the same column types (a migration that reached one and not the other is caught here,
    /// not by a failing export). A replica that does not answer leaves the pages served (it is
    /// logged; its exports answer 503 until it does).
    async fn check_replica(
        &self,
        replica: &deadpool_postgres::Pool,
        catalog: Arc<Catalog>,
    ) -> Result<Arc<Catalog>, CheckError> {
        let theirs = match replica.get().await {
            Ok(mut client) => catalog::check(&mut client, &self.table).await,
            Err(error) => Err(CheckError::Unreachable(error.to_string())),
        };
        match theirs {
            Ok(theirs) if theirs.columns == catalog.columns => Ok(catalog),
            Ok(_) => Err(CheckError::Invalid(format!(
                "the read replica's `{}` has other columns or types than the primary's: exports would read something else; let the replica catch up, or point replica_url at one of the same schema",
                self.table.name
            ))),
            Err(CheckError::Invalid(reason)) => Err(CheckError::Invalid(format!(
                "on the read replica: {reason}"
            ))),
            Err(CheckError::Unreachable(error)) => {
                tracing::warn!(route = %self.route, %error, "the read replica cannot be reached: pages are served, exports answer 503 until it can");
                Ok(catalog)
            }
        }
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
    let mut rows = Running::new(client, &resource.database)
        .rows(&statement)
        .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let mut body = String::from("{\"data\":[");
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(running::value::<&str>(row, 0)?);
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
