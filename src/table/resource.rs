//! One table route's resource ([`Resource`]): its table as the catalog describes it, checked
//! before it is served and again after its database comes back or its table changes; its share
//! of the database's connections; and, when the database refuses a client's value, which one.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use super::running::{Ctx, pool_error};
use super::{
    Catalog, CheckError, Database, PgError, RETRY_INVALID, RETRY_UNREACHABLE, Running, catalog,
};
use crate::cursor::{CursorCodec, route_id};
use crate::table::config::TableConfig;

mod blame;

pub(super) use blame::{Offered, Source};

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

/// One table route's resource: its table, database, cursor codec, check state and share of
/// the database's pool.
#[derive(Debug)]
pub struct Resource {
    route: String,
    /// The route's name, shared with every statement's log context.
    ctx_route: Arc<str>,
    /// Its share of the database's pool: one place a statement.
    share: Arc<tokio::sync::Semaphore>,
    share_size: usize,
    path: String,
    route_id: u64,
    table: Arc<TableConfig>,
    database: Arc<Database>,
    state: Mutex<State>,
    /// One check at a time: requests that find a check due wait for the one running.
    checking: tokio::sync::Mutex<()>,
}

impl Resource {
    /// The resource of route `route`, holding at most `share` of `database`'s connections: the
    /// places of `previous` (the route's resource before a reload) when it had as many of the
    /// same database's, so statements still running count against the same share.
    pub fn new(
        route: &str,
        path: &str,
        table: Arc<TableConfig>,
        (database, share, previous): (Arc<Database>, usize, Option<&Resource>),
    ) -> Arc<Self> {
        let places = previous
            .filter(|p| p.share_size == share && Arc::ptr_eq(&p.database, &database))
            .map_or_else(
                || Arc::new(tokio::sync::Semaphore::new(share)),
                |p| Arc::clone(&p.share),
            );
        Arc::new(Self {
            route: route.to_owned(),
            ctx_route: Arc::from(route),
            share: places,
            share_size: share,
            path: path.to_owned(),
            route_id: route_id(route),
            table,
            database,
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
        &self.table.codec
    }

    /// The id cursors of this route carry.
    pub(super) fn route_id(&self) -> u64 {
        self.route_id
    }

    /// The most connections of its database's pool it holds at once.
    pub fn share(&self) -> usize {
        self.share_size
    }

    /// Whether its last check found the table unfit (the route is out of service).
    pub(crate) fn unfit(&self) -> bool {
        matches!(*self.lock(), State::Unfit { .. })
    }

    /// A place of the route's share taken now if one is to spare: one more stays free, so an
    /// export's extra ranges never take the last place the route's other requests may need.
    /// Taken, not only looked at: two exports that both saw two free would each take one.
    pub(super) fn spare_place(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let place = Arc::clone(&self.share).try_acquire_owned().ok()?;
        (self.share.available_permits() >= 1).then_some(place)
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
            Ok(catalog) => {
                if !matches!(*state, State::Ready(_)) {
                    for warning in &catalog.warnings {
                        tracing::warn!(route = %self.route, "{warning}");
                    }
                }
                *state = State::Ready(Arc::clone(catalog));
            }
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
    pub(super) async fn ready(&self) -> Result<Arc<Catalog>, PgError> {
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

    /// The log context of a statement run for `req`.
    pub(super) fn ctx(&self, req: &crate::Request) -> Ctx {
        Ctx {
            route: Arc::clone(&self.ctx_route),
            request: req
                .headers()
                .get(crate::telemetry::REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        }
    }

    /// A connection for one statement, within the route's share of the pool (`export`: the
    /// pool exports read, the replica's when there is one). The share is waited for as long
    /// as a connection is (`connect_timeout`): then 503, so one route flooded with slow
    /// statements cannot hold every connection of its database.
    pub(super) async fn connection(&self, export: bool, ctx: &Ctx) -> Result<Running, PgError> {
        self.connection_in(None, export, ctx).await
    }

    /// As [`Self::connection`], in `place` of the route's share when one was taken already
    /// ([`Self::spare_place`]).
    pub(super) async fn connection_in(
        &self,
        place: Option<tokio::sync::OwnedSemaphorePermit>,
        export: bool,
        ctx: &Ctx,
    ) -> Result<Running, PgError> {
        let wait = self.database.config().connect_timeout;
        let share = match place {
            Some(place) => Ok(Ok(place)),
            None => tokio::time::timeout(wait, Arc::clone(&self.share).acquire_owned()).await,
        };
        let Ok(Ok(share)) = share else {
            tracing::warn!(
                route = &*ctx.route,
                request_id = ctx.request.as_deref().unwrap_or("-"),
                share = self.share_size,
                "the route's share of the database's connections stayed taken for connect_timeout"
            );
            return Err(PgError::Unavailable);
        };
        let pool = if export {
            self.database.export_pool()
        } else {
            self.database.pool()
        };
        match pool.get().await {
            Ok(client) => Ok(Running::new(client, share, &self.database, ctx)),
            Err(error) => Err(pool_error(&error, ctx)),
        }
    }

    /// Reads the table's columns again before the next statement, whatever the last check
    /// found (a reload).
    pub fn reread(&self) {
        *self.lock() = State::Unchecked { tried: None };
    }

    /// Forgets the columns read: the table changed under the route ([`PgError::Changed`]), so
    /// they are read again before the next statement.
    pub(super) fn forget(&self) {
        let mut state = self.lock();
        if matches!(*state, State::Ready(_)) {
            *state = State::Unchecked { tried: None };
        }
    }
}
