//! What a generation builds from the config beside its stacks: upstream clients, the
//! held-page budget, the Redis connection, databases, table resources and limiters.
//! Each goes through [`reuse`]: while its settings are unchanged, the previous generation's is
//! kept, so pooled connections, buckets, slots and held pages survive a reload.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::num::NonZeroUsize;
use std::sync::Arc;

use http::HeaderName;

use super::{BuildError, DEFAULT_ROUTE_NAME, Generation};
use crate::config::{Config, RouteConfig, TableConfig, Target, UpstreamConfig};
use crate::identity::{Gate, Verifier, Verifiers};
use crate::limit::config::{ClientKeySource, LimitsConfig};
use crate::limit::{Limits, RateLimitService, Redis, Stores};
use crate::list::guard::HeldBudget;
use crate::table::config::ScopeSource;
use crate::table::{Database, Resource};
use crate::telemetry::Metrics;
use crate::upstream::UpstreamClient;

/// The previous generation's `old` when `same` says its settings are unchanged, else a new one.
pub(super) fn reuse<T: Clone, E>(
    old: Option<&T>,
    same: impl FnOnce(&T) -> bool,
    build: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    match old.filter(|old| same(old)) {
        Some(old) => Ok(old.clone()),
        None => build(),
    }
}

/// Everything a generation holds beside its route table and stacks. Upstream clients,
/// databases and table resources are made as routes ask for them, from the settings the
/// loaded config resolved, so nothing here looks a name up and can miss.
pub(super) struct Resources<'a> {
    previous: Option<&'a Generation>,
    metrics: &'a Metrics,
    /// Table routes on each database, by its name: how a route's share of the pool is sized.
    routes_on: BTreeMap<String, usize>,
    pub(super) upstreams: BTreeMap<String, Arc<UpstreamClient>>,
    pub(super) room: Arc<HeldBudget>,
    pub(super) redis: Option<Redis>,
    pub(super) rls: Option<RateLimitService>,
    pub(super) databases: BTreeMap<String, Arc<Database>>,
    pub(super) resources: BTreeMap<String, Arc<Resource>>,
    pub(super) limits: BTreeMap<String, Arc<Limits>>,
    /// Each identity's verifier, by name (a `jwks_url`'s fetched set survives a reload).
    pub(super) verifiers: Verifiers,
    /// The request headers the limits and identities read: the hop keeps them as read.
    decided: Arc<[HeaderName]>,
    /// `trace_context: anyone`: any client's trace context passes (without `traces`).
    pub(super) trace_context_from_anyone: bool,
}

impl<'a> Resources<'a> {
    /// The budget, Redis and limiters for `config`, reusing what `previous` built from equal
    /// settings; clients, databases and resources follow as routes ask.
    pub(super) fn new(
        config: &Config,
        previous: Option<&'a Generation>,
        metrics: &'a Metrics,
    ) -> Result<Self, BuildError> {
        let budget = (config.max_held_bytes, config.max_held_bytes_per_client);
        let Ok(room) = reuse(
            previous.map(|p| &p.room),
            |room| room.settings() == budget,
            || {
                let cuts = metrics.protection("held_stream_cut");
                Ok::<_, Infallible>(HeldBudget::counted(budget.0, budget.1, cuts))
            },
        );
        let redis = match &config.redis {
            None => None,
            Some(settings) => Some(reuse(
                previous.and_then(|p| p.redis.as_ref()),
                |redis| redis.config() == settings,
                || Redis::new(settings.clone()).map_err(|e| BuildError::Redis(e.to_string())),
            )?),
        };
        let rls = match &config.rate_limit_service {
            None => None,
            Some(settings) => Some(reuse(
                previous.and_then(|p| p.rls.as_ref()),
                |rls| rls.config() == settings,
                || RateLimitService::new(settings.clone()).map_err(BuildError::RateLimitService),
            )?),
        };
        let mut routes_on = BTreeMap::new();
        for route in &config.routes {
            if let Target::Table(table) = &route.target {
                *routes_on.entry(table.database.clone()).or_default() += 1;
            }
        }
        let stores = Stores {
            redis: redis.as_ref(),
            rls: rls.as_ref(),
        };
        let limits = limits(config, previous, stores, metrics);
        let mut verifiers = Verifiers::new();
        for (name, settings) in &config.identities {
            let old = previous.and_then(|p| p.verifiers.get(name));
            let verifier = reuse(
                old,
                |v| v.config() == settings,
                || {
                    let counters = metrics.identity(name);
                    Verifier::new(Arc::clone(settings), old.map(AsRef::as_ref), counters)
                        .map(Arc::new)
                },
            )
            .map_err(|reason| BuildError::Identity {
                identity: name.clone(),
                reason,
            })?;
            verifiers.insert(name.clone(), verifier);
        }
        Ok(Self {
            decided: headers_read(config),
            trace_context_from_anyone: config.server.trace_context_from_anyone,
            verifiers,
            previous,
            metrics,
            routes_on,
            upstreams: BTreeMap::new(),
            room,
            redis,
            rls,
            databases: BTreeMap::new(),
            resources: BTreeMap::new(),
            limits,
        })
    }

    /// The request headers `config`'s limits and identities read: a `Connection` header cannot
    /// remove them, nor an `_` spelling stand in for them at the backend.
    pub(super) fn decided(&self) -> Arc<[HeaderName]> {
        Arc::clone(&self.decided)
    }

    /// The client of an upstream: the previous one while its settings are unchanged.
    pub(super) fn client(
        &mut self,
        settings: &Arc<UpstreamConfig>,
    ) -> Result<Arc<UpstreamClient>, BuildError> {
        if let Some(client) = self.upstreams.get(&settings.name) {
            return Ok(Arc::clone(client));
        }
        let old = self.previous.and_then(|p| p.upstreams.get(&settings.name));
        let metrics = self.metrics;
        let client = reuse(
            old,
            |client| client.config() == settings,
            || {
                let counted = metrics.upstream(&settings.name);
                UpstreamClient::counted(Arc::clone(settings), counted)
                    .map(Arc::new)
                    .map_err(|reason| BuildError::UpstreamTls {
                        upstream: settings.name.clone(),
                        reason,
                    })
            },
        )?;
        self.upstreams
            .insert(settings.name.clone(), Arc::clone(&client));
        Ok(client)
    }

    /// A table's database: its pools, the previous ones while its settings are unchanged.
    fn database(&mut self, table: &TableConfig) -> Result<Arc<Database>, BuildError> {
        if let Some(database) = self.databases.get(&table.database) {
            return Ok(Arc::clone(database));
        }
        let settings = &table.postgres;
        let database = reuse(
            self.previous.and_then(|p| p.databases.get(&table.database)),
            |db| db.config() == settings,
            || {
                Ok::<_, BuildError>(Arc::new(Database::new(
                    &table.database,
                    Arc::clone(settings),
                )?))
            },
        )?;
        self.databases
            .insert(table.database.clone(), Arc::clone(&database));
        Ok(database)
    }

    /// A table route's resource: the previous one while nothing it was built from changed, so
    /// its share's places stay counted.
    pub(super) fn resource(
        &mut self,
        route: &RouteConfig,
        table: &Arc<TableConfig>,
    ) -> Result<Arc<Resource>, BuildError> {
        if let Some(resource) = self.resources.get(&route.name) {
            return Ok(Arc::clone(resource));
        }
        let database = self.database(table)?;
        // A route holds at most its share of the pool: all of it when it is the database's
        // only table route, else half (rounded up), unless `max_connections` says.
        let pool_size = database.config().pool_size.get();
        let alone = self.routes_on.get(&table.database) == Some(&1);
        let share = table.max_connections.map_or(
            if alone {
                pool_size
            } else {
                pool_size.div_ceil(2)
            },
            NonZeroUsize::get,
        );
        let old = self.previous.and_then(|p| p.resources.get(&route.name));
        let Ok(resource) = reuse(
            old,
            |r| {
                r.table() == table
                    && r.path() == route.path
                    && r.share() == share
                    && Arc::ptr_eq(r.database(), &database)
            },
            || {
                let place = (Arc::clone(&database), share, old.map(AsRef::as_ref));
                let new = Resource::new(&route.name, &route.path, Arc::clone(table), place);
                Ok::<_, Infallible>(new)
            },
        );
        if old.is_some_and(|old| Arc::ptr_eq(old, &resource)) {
            // Its columns are read again all the same: a reload never serves with types read
            // before it.
            resource.reread();
        }
        self.resources
            .insert(route.name.clone(), Arc::clone(&resource));
        Ok(resource)
    }
}

/// The identity gate of a route that reads a claim (its limit key's, its table scope's); both
/// name one identity (validation sees to it).
pub(super) fn gate(
    verifiers: &Verifiers,
    limits: Option<&crate::config::LimitsConfig>,
    table: Option<&TableConfig>,
) -> Option<Arc<Gate>> {
    let mut claims = Vec::new();
    let mut identity = None;
    let mut anonymous = true;
    if let Some(ClientKeySource::Claim(key)) = limits.map(|l| &l.key) {
        claims.push(key.claim.clone());
        identity = Some(&key.identity.name);
        anonymous = key.anonymous;
    }
    if let Some(ScopeSource::Claim {
        identity: id,
        claim,
    }) = table.and_then(|t| t.scope.as_ref()).map(|s| &s.from)
    {
        claims.push(claim.clone());
        identity = Some(&id.name);
        // A scope has no anonymous rows.
        anonymous = false;
    }
    let verifier = Arc::clone(verifiers.get(identity?)?);
    Some(Arc::new(Gate {
        verifier,
        claims,
        anonymous,
    }))
}

/// Limiters, by route name: reused while a route keeps its name and its limits, so buckets and
/// slots survive a reload.
fn limits(
    config: &Config,
    previous: Option<&Generation>,
    stores: Stores<'_>,
    metrics: &Metrics,
) -> BTreeMap<String, Arc<Limits>> {
    let limited = config
        .routes
        .iter()
        .map(|r| (r.name.as_str(), r.limits.as_ref()))
        .chain([(DEFAULT_ROUTE_NAME, config.default_limits.as_ref())]);
    let mut limits = BTreeMap::new();
    for (name, settings) in limited {
        let Some(settings) = settings else { continue };
        let Ok(route) = reuse(
            previous.and_then(|p| p.limits.get(name)),
            |limits| limits.reusable(settings, stores),
            || {
                let overflow = metrics.limit_overflow(name);
                Ok::<_, Infallible>(Limits::with_stores(
                    settings.clone(),
                    name,
                    stores,
                    overflow,
                ))
            },
        );
        limits.insert(name.to_owned(), route);
    }
    limits
}

/// Every request header `config`'s limits and identities read (keys, tenant matches,
/// descriptors, tokens), once each.
fn headers_read(config: &Config) -> Arc<[HeaderName]> {
    let mut names: Vec<HeaderName> = config
        .routes
        .iter()
        .filter_map(|route| route.limits.as_ref())
        .chain(&config.default_limits)
        .flat_map(LimitsConfig::headers)
        .chain(config.identities.values().map(|identity| &identity.header))
        .cloned()
        .collect();
    names.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
    names.dedup();
    names.into()
}
