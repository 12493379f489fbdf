//! A generation: everything one config builds — the route table, each route's stack, upstream
//! clients, the cursor codec, the held-page budget — as one value. The server holds the current
//! generation behind an [`ArcSwap`](arc_swap::ArcSwap) and loads it per request, so a reload is
//! one `store`; requests in flight keep what their route's stack holds until their body ends.
//!
//! Building a generation takes the previous one and reuses every resource whose config is equal:
//! an upstream whose settings did not change keeps its client and its pooled connections.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::Request;
use crate::config::{Config, CursorSettings, DefaultPolicy, RouteConfig, TimeoutOverrides};
use crate::cursor::CursorCodec;
use crate::limit::{Limits, Redis};
use crate::list::guard::HeldBudget;
use crate::list::pagination::ListRoute;
use crate::methods::{self, Landing};
use crate::proxy::router::{Refuse, RouteService};
use crate::proxy::stack::{self, RouteParts};
use crate::route_table::RouteTable;
use crate::table::{Database, Resource, SetupError};
use crate::telemetry::Metrics;
use crate::upstream::{Forward, UpstreamClient};

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
    cursors: Option<(CursorSettings, Arc<CursorCodec>)>,
    room: Arc<HeldBudget>,
    /// Each limited route's limiters, by route name.
    limits: BTreeMap<String, Arc<Limits>>,
    /// The Redis connection shared limits use.
    redis: Option<Redis>,
    /// Databases, by name.
    databases: BTreeMap<String, Arc<Database>>,
    /// Table routes' resources, by route name.
    resources: BTreeMap<String, Arc<Resource>>,
}

/// Why a config could not be built into a generation. Validation makes this unreachable for a
/// config from [`Config::parse`]; a hand-made config may still break its rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// Two routes overlap.
    #[error("route `{route}` overlaps route `{other}`")]
    Overlap {
        /// The later route.
        route: String,
        /// The earlier one.
        other: String,
    },
    /// A route or the default policy names an upstream that is not declared.
    #[error("upstream `{0}` is not declared")]
    UnknownUpstream(String),
    /// A keyset route without cursor keys, or keys that do not make a codec.
    #[error("keyset routes need valid cursor keys")]
    Cursors,
    /// The Redis client could not be made (a bad URL, or no Tokio runtime).
    #[error("cannot use redis: {0}")]
    Redis(String),
    /// A database's pool could not be set up (an unset environment variable, a bad URL).
    #[error(transparent)]
    Postgres(#[from] SetupError),
    /// A table route names a database that is not declared.
    #[error("database `{0}` is not declared")]
    UnknownDatabase(String),
}

impl Generation {
    /// Builds a generation from `config`, reusing what `previous` built from equal settings.
    pub fn build(
        config: Config,
        previous: Option<&Self>,
        metrics: &Metrics,
    ) -> Result<Self, BuildError> {
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
        let table = RouteTable::new(&specs).map_err(|(later, earlier)| BuildError::Overlap {
            route: config.routes[served[specs[later].value].0].name.clone(),
            other: config.routes[served[specs[earlier].value].0].name.clone(),
        })?;
        let Resources {
            upstreams,
            cursors,
            room,
            redis,
            databases,
            resources,
            limits,
        } = Resources::build(&config, previous, metrics)?;
        let mut generation = Self {
            table,
            routes: Vec::with_capacity(config.routes.len()),
            read_body: Vec::with_capacity(config.routes.len()),
            fallback: stack::route(
                parts(DEFAULT_ROUTE_NAME, None, None, metrics, &room),
                Refuse::no_route(),
            ),
            refuse: stack::route(
                parts(REFUSED_ROUTE_NAME, None, None, metrics, &room),
                Refuse::method(),
            ),
            upstreams,
            cursors,
            room,
            limits,
            redis,
            databases,
            resources,
            config: Arc::clone(&config),
        };
        for &(i, export) in &served {
            let service = generation.route_service(&config.routes[i], export, metrics)?;
            generation.routes.push(service);
            generation.read_body.push(config.routes[i].allow_read_body);
        }
        // The default policy is a route like the others: `deny` refuses, `pass` forwards.
        if let DefaultPolicy::Pass(upstream) = &config.default {
            let forward = generation.forward(upstream, TimeoutOverrides::default())?;
            let limits = generation.limits.get(DEFAULT_ROUTE_NAME).cloned();
            let parts = parts(DEFAULT_ROUTE_NAME, None, limits, metrics, &generation.room);
            generation.fallback = stack::route(parts, forward);
        }
        Ok(generation)
    }

    fn route_service(
        &self,
        route: &RouteConfig,
        export: bool,
        metrics: &Metrics,
    ) -> Result<RouteService, BuildError> {
        let list = match &route.list {
            Some(policy) => {
                let codec = match (&policy.keyset, &self.cursors) {
                    (None, _) => None,
                    (Some(_), Some((_, codec))) => Some(Arc::clone(codec)),
                    (Some(_), None) => return Err(BuildError::Cursors),
                };
                Some(Arc::new(ListRoute {
                    policy: policy.clone(),
                    codec,
                }))
            }
            None => None,
        };
        let limits = self.limits.get(&route.name).cloned();
        let parts = parts(&route.name, list, limits, metrics, &self.room);
        match &route.target {
            crate::config::Target::Upstream(upstream) => {
                Ok(stack::route(parts, self.forward(upstream, route.timeouts)?))
            }
            crate::config::Target::Table(_) => {
                let resource = self.resources.get(&route.name).ok_or(BuildError::Cursors)?;
                Ok(stack::table(parts, Arc::clone(resource), export))
            }
        }
    }

    fn forward(&self, upstream: &str, timeouts: TimeoutOverrides) -> Result<Forward, BuildError> {
        let client = self
            .upstreams
            .get(upstream)
            .ok_or_else(|| BuildError::UnknownUpstream(upstream.to_owned()))?;
        Ok(Forward::new(Arc::clone(client), timeouts))
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
        };
        if found.routed_path
            && let Some((_, overridden)) = methods::query_override(req)
            && let Ok(overridden) = http::Method::from_bytes(overridden.as_bytes())
        {
            at.override_moves =
                self.table.lookup(&overridden, req.uri().path()).route != found.route;
        }
        if found.routed_path && !found.list_path && methods::has_form(req) {
            // Read as the body streams (methods::form): which `_method`s would move it.
            let path = req.uri().path();
            at.form_moves = methods::moves(|method| {
                method != req.method() && self.table.lookup(method, path).route != found.route
            });
        }
        let route = match found.route {
            Some(&i) => {
                at.read_body = self.read_body.get(i).copied().unwrap_or(false);
                self.routes.get(i).unwrap_or(&self.fallback)
            }
            None => &self.fallback,
        };
        if crate::route_table::nul(req.uri().path()) || methods::check(req, at).is_err() {
            return (&self.refuse, at, true);
        }
        (route, at, false)
    }

    /// The config this generation was built from.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// The client of an upstream, by name.
    pub fn upstream(&self, name: &str) -> Option<&Arc<UpstreamClient>> {
        self.upstreams.get(name)
    }

    /// The budget all held list pages share.
    pub fn held_budget(&self) -> &Arc<HeldBudget> {
        &self.room
    }

    /// Table routes' resources, by route name.
    pub fn resources(&self) -> impl Iterator<Item = &Arc<Resource>> {
        self.resources.values()
    }

    /// A route's limiters, by route name (`-` for the default route).
    pub fn limits(&self, route: &str) -> Option<&Arc<Limits>> {
        self.limits.get(route)
    }
}

fn parts(
    name: &str,
    list: Option<Arc<ListRoute>>,
    limits: Option<Arc<Limits>>,
    metrics: &Metrics,
    room: &Arc<HeldBudget>,
) -> RouteParts {
    let metrics = metrics.route(name, list.is_some());
    RouteParts {
        name: name.to_owned(),
        metrics,
        list,
        limits,
        room: Arc::clone(room),
    }
}

#[cfg(test)]
mod tests;
