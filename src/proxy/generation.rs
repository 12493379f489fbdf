//! A generation: everything one config builds — the route table, each route's stack, upstream
//! clients, databases, the held-page budget — as one value. The server holds the current
//! generation behind an [`ArcSwap`](arc_swap::ArcSwap) and loads it per request, so a reload is
//! one `store`; requests in flight keep what their route's stack holds until their body ends.
//!
//! Building a generation takes the previous one and reuses every resource whose config is equal:
//! an upstream whose settings did not change keeps its client and its pooled connections.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::Request;
use crate::config::{Config, DefaultPolicy, RouteConfig, Target, TimeoutOverrides};
use crate::limit::{Limits, Redis};
use crate::list::config::ListPolicy;
use crate::list::guard::HeldBudget;
use crate::methods::{self, Landing};
use crate::proxy::router::{Refuse, RouteService};
use crate::proxy::stack::{self, RouteParts};
use crate::route_table::RouteTable;
use crate::table::{Database, Resource, SetupError};
use crate::telemetry::Metrics;
use crate::upstream::{Forward, UpstreamClient};

mod certificates;
pub(crate) use certificates::certificates;
mod resources;

use resources::Resources;

/// The name logs and metrics use for requests no route matched.
pub(crate) const DEFAULT_ROUTE_NAME: &str = "-";
/// The name logs and metrics use for requests refused for their method ([`crate::methods`]).
pub(crate) const REFUSED_ROUTE_NAME: &str = "!method";

/// Everything one config builds; see the module docs.
#[derive(Debug)]
pub struct Generation {
    config: Arc<Config>,
    table: RouteTable<usize>,
    routes: Vec<RouteService>,
    /// Whether each of `routes` lets GET and HEAD carry a body.
    read_body: Vec<bool>,
    fallback: RouteService,
    refuse: RouteService,
    upstreams: BTreeMap<String, Arc<UpstreamClient>>,
    room: Arc<HeldBudget>,
    /// Each limited route's limiters, by route name.
    limits: BTreeMap<String, Arc<Limits>>,
    /// The Redis connection shared limits use.
    redis: Option<Redis>,
    /// The Envoy rate-limit service `store: envoy_rls` routes ask.
    rls: Option<crate::limit::RateLimitService>,
    /// Each identity's verifier, by name.
    verifiers: crate::identity::Verifiers,
    /// Databases, by name.
    databases: BTreeMap<String, Arc<Database>>,
    /// Table routes' resources, by route name.
    resources: BTreeMap<String, Arc<Resource>>,
    /// The listener's TLS, read from this config's files: each new connection handshakes
    /// with the generation current when it was accepted.
    tls: Option<Arc<rustls::ServerConfig>>,
}

/// Why a config could not be built into a generation: what needs the outside world. What
/// validation rules out (overlapping routes, undeclared upstreams and databases, keyset routes
/// without keys) cannot reach here: a loaded config holds the settings it resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The Redis client could not be made (no Tokio runtime).
    #[error("cannot use redis: {0}")]
    Redis(String),
    /// The rate-limit service's client could not be made.
    #[error("rate_limit_service: {0}")]
    RateLimitService(String),
    /// A database's pool could not be set up (an unset environment variable, a bad URL).
    #[error(transparent)]
    Postgres(#[from] SetupError),
    /// An `https://` upstream's TLS could not be set up (no CA to verify it with, a client
    /// certificate rustls refuses).
    #[error("upstream `{upstream}`: {reason}")]
    UpstreamTls {
        /// The upstream.
        upstream: String,
        /// What to change.
        reason: String,
    },
    /// A config checked without the environment ([`Config::check`]): its secrets are
    /// stand-ins, which must never sign a cursor.
    #[error(
        "these environment variables are unset: {}: set them before pagegate runs (`pagegate check --strict-env` requires them too)",
        .0.join(", ")
    )]
    UnsetEnv(Vec<String>),
    /// An identity's `jwks_url` cannot be fetched with its TLS settings.
    #[error("identities.{identity}: {reason}")]
    Identity {
        /// The identity.
        identity: String,
        /// What to change.
        reason: String,
    },
    /// The listener's certificate or key cannot be served.
    #[error("tls: cannot serve the certificate ({0}): give a certificate and key rustls accepts")]
    ListenerTls(String),
}

impl Generation {
    /// Builds a generation from `config`, reusing what `previous` built from equal settings.
    pub fn build(
        config: Config,
        previous: Option<&Self>,
        metrics: &Metrics,
    ) -> Result<Self, BuildError> {
        if !config.unset_env.is_empty() {
            return Err(BuildError::UnsetEnv(config.unset_env));
        }
        let config = Arc::new(config);
        // One service per path a route serves: a table route serves `<path>` (pages) and
        // `<path>/export`, each its own entry, so which one matched is the router's answer, not
        // a guess from the request's path.
        let mut specs = Vec::new();
        let mut served = Vec::new();
        for (i, route) in config.routes.iter().enumerate() {
            for (j, mut spec) in route.specs(0).into_iter().enumerate() {
                spec.value = served.len();
                served.push((i, j == 1));
                specs.push(spec);
            }
        }
        let mut made = Resources::new(&config, previous, metrics)?;
        let mut routes = Vec::with_capacity(served.len());
        let mut read_body = Vec::with_capacity(served.len());
        for &(i, export) in &served {
            let route = &config.routes[i];
            routes.push(route_service(route, export, &mut made, metrics)?);
            read_body.push(route.allow_read_body);
        }
        // The default policy is a route like the others: `deny` refuses, `pass` forwards.
        let mut fallback = parts(DEFAULT_ROUTE_NAME, None, None, metrics, &made.room);
        fallback.identity = resources::gate(&made.verifiers, config.default_limits.as_ref(), None);
        let fallback = match &config.default {
            DefaultPolicy::Pass(upstream) => {
                let client = made.client(upstream)?;
                let counted = fallback.metrics.request_bytes();
                let overrides = TimeoutOverrides::default();
                let read_body = config.default_allow_read_body;
                let decided = (made.decided(), made.trace_context_from_anyone);
                let forward = Forward::new(client, overrides, counted, decided, read_body);
                let limits = made.limits.get(DEFAULT_ROUTE_NAME).cloned();
                stack::route(RouteParts { limits, ..fallback }, forward)
            }
            DefaultPolicy::Deny => stack::route(fallback, Refuse::no_route()),
        };
        let refuse = stack::route(
            parts(REFUSED_ROUTE_NAME, None, None, metrics, &made.room),
            Refuse::method(),
        );
        // Built anew each time: a reload reads the files again. The session cache is kept.
        let tls = match &config.server.tls {
            Some(tls) => {
                // Sessions resume across a reload only while the client CAs stay: a resumed
                // session skips the client-certificate check.
                let same_clients = |p: &&Self| {
                    let was = p.config.server.tls.as_ref().map(|t| &t.client_ca);
                    was == Some(&tls.client_ca)
                };
                let running = previous.filter(same_clients).and_then(|p| p.tls.as_deref());
                let served = crate::tls::server_config(tls, running)
                    .map_err(|e| BuildError::ListenerTls(e.to_string()))?;
                Some(served)
            }
            None => None,
        };
        Ok(Self {
            tls,
            // Validation found no overlap, so the table serves every route.
            table: RouteTable::new(&specs),
            routes,
            read_body,
            fallback,
            refuse,
            upstreams: made.upstreams,
            room: made.room,
            limits: made.limits,
            redis: made.redis,
            rls: made.rls,
            verifiers: made.verifiers,
            databases: made.databases,
            resources: made.resources,
            config,
        })
    }

    /// The route serving a request: a configured route, the default policy's route when none
    /// matches, or the refusing route when its method could be read differently by a backend
    /// ([`methods::check`]: CONNECT anywhere; on a path some route serves, whatever its
    /// method, a non-canonical method or a `_method` override; a GET/HEAD body where the route
    /// reached does not allow one; an `Upgrade` on a list path), or its path holds a NUL byte.
    /// Also says where it landed,
    /// and whether it is refused.
    pub fn route(&self, req: &Request) -> (&RouteService, Landing, bool) {
        let found = self.table.lookup(req.method(), req.uri().path());
        let mut at = Landing {
            list_path: found.list_path,
            routed_path: found.routed_path,
            read_body: self.config.default_allow_read_body,
            override_moves: false,
            form_moves: 0,
            ambiguous_path: found.ambiguous,
        };
        if found.routed_path
            && let Some((_, overridden)) = methods::query_override(req)
            && let Ok(overridden) = http::Method::from_bytes(overridden.as_bytes())
        {
            at.override_moves =
                self.table.lookup(&overridden, req.uri().path()).route != found.route;
        }
        if found.routed_path && methods::has_form(req) {
            // Which `_method`s in the body would move it (methods::form): to another route,
            // or on a list path to a read.
            let path = req.uri().path();
            let read = |m: &http::Method| m == http::Method::GET || m == http::Method::HEAD;
            at.form_moves = methods::moves(|method| {
                method != req.method()
                    && (self.table.lookup(method, path).route != found.route
                        || (found.list_path && read(method)))
            });
        }
        let route = match found.route {
            Some(&i) => {
                at.read_body = self.read_body.get(i).copied().unwrap_or(false);
                self.routes.get(i).unwrap_or(&self.fallback)
            }
            None => &self.fallback,
        };
        if found.ambiguous
            || crate::route_table::unfit(req).is_some()
            || methods::check(req, at).is_err()
        {
            return (&self.refuse, at, true);
        }
        (route, at, false)
    }

    /// The listener's TLS, when `tls` is set.
    pub(crate) fn tls(&self) -> Option<&Arc<rustls::ServerConfig>> {
        self.tls.as_ref()
    }

    /// The config this generation was built from.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// The client of an upstream some route or the default policy uses, by name.
    pub fn upstream(&self, name: &str) -> Option<&Arc<UpstreamClient>> {
        self.upstreams.get(name)
    }

    /// The databases table routes read from, by name.
    pub(crate) fn databases(&self) -> &BTreeMap<String, Arc<Database>> {
        &self.databases
    }

    /// The budget all held list pages share.
    pub fn held_budget(&self) -> &Arc<HeldBudget> {
        &self.room
    }

    /// Table routes' resources, by route name.
    pub fn resources(&self) -> impl Iterator<Item = &Arc<Resource>> {
        self.resources.values()
    }

    /// Checks every table route against its database's catalog, all at once: the first that
    /// does not fit its table, as (route, what to change). A route out of service already
    /// under `previous` (its table changed under it) does not refuse: it answers 503 as it
    /// does now, and must not hold back every other change, a certificate's included; a
    /// reload refuses only to break a route that works. A database that does not answer is
    /// logged and passes (its routes answer 503 and are checked when it comes back).
    pub(crate) async fn check_tables(
        &self,
        previous: Option<&Generation>,
    ) -> Result<(), (String, String)> {
        use crate::table::CheckError::Invalid;
        let checks = self
            .resources()
            .map(|resource| async move { (resource, resource.check().await) });
        for (resource, outcome) in futures_util::future::join_all(checks).await {
            match outcome {
                Ok(_) => {}
                Err(Invalid(reason)) => {
                    // The route as it serves now: the same resource (checked just now), or
                    // the one it replaces, unfit too (found so before, or checked now).
                    let old = previous.and_then(|p| p.resources.get(resource.route()));
                    let broken = match old {
                        Some(old) if Arc::ptr_eq(old, resource) || old.unfit() => true,
                        Some(old) => matches!(old.check().await, Err(Invalid(_))),
                        None => false,
                    };
                    if !broken {
                        return Err((resource.route().to_owned(), reason));
                    }
                }
                Err(crate::table::CheckError::Unreachable(error)) => tracing::warn!(
                    route = %resource.route(),
                    %error,
                    "database not reachable; the route answers 503 until it is"
                ),
            }
        }
        Ok(())
    }

    /// A route's limiters, by route name (`-` for the default route).
    pub fn limits(&self, route: &str) -> Option<&Arc<Limits>> {
        self.limits.get(route)
    }
}

/// The stack of one path a route serves (`export`: a table route's `<path>/export`).
fn route_service(
    route: &RouteConfig,
    export: bool,
    made: &mut Resources<'_>,
    metrics: &Metrics,
) -> Result<RouteService, BuildError> {
    let list = route.list.clone().map(Arc::new);
    let limits = made.limits.get(&route.name).cloned();
    let mut parts = parts(&route.name, list, limits, metrics, &made.room);
    let table = match &route.target {
        Target::Table(table) => Some(table.as_ref()),
        Target::Upstream(_) => None,
    };
    parts.identity = resources::gate(&made.verifiers, route.limits.as_ref(), table);
    Ok(match &route.target {
        Target::Upstream(upstream) => {
            let counted = parts.metrics.request_bytes();
            let client = made.client(upstream)?;
            let decided = (made.decided(), made.trace_context_from_anyone);
            let read_body = route.allow_read_body;
            let forward = Forward::new(client, route.timeouts, counted, decided, read_body);
            stack::route(parts, forward)
        }
        Target::Table(table) => stack::table(parts, made.resource(route, table)?, export),
    })
}

fn parts(
    name: &str,
    list: Option<Arc<ListPolicy>>,
    limits: Option<Arc<Limits>>,
    metrics: &Metrics,
    room: &Arc<HeldBudget>,
) -> RouteParts {
    let metrics = metrics.route(name, list.is_some());
    RouteParts::new(name, metrics, list, limits, Arc::clone(room))
}

#[cfg(test)]
mod tests;
