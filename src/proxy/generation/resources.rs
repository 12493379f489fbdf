//! What a generation builds from the config beside its stacks: upstream clients, the cursor
//! codec, the held-page budget, the Redis connection, databases, table resources and limiters.
//! Each goes through [`reuse`]: while its settings are unchanged, the previous generation's is
//! kept, so pooled connections, buckets, slots and held pages survive a reload.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::num::NonZeroUsize;
use std::sync::Arc;

use super::{BuildError, DEFAULT_ROUTE_NAME, Generation};
use crate::config::{Config, CursorSettings, Target};
use crate::cursor::CursorCodec;
use crate::limit::{Limits, Redis};
use crate::list::guard::HeldBudget;
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

/// Everything a generation holds beside its route table and stacks.
pub(super) struct Resources {
    pub(super) upstreams: BTreeMap<String, Arc<UpstreamClient>>,
    pub(super) cursors: Option<(CursorSettings, Arc<CursorCodec>)>,
    pub(super) room: Arc<HeldBudget>,
    pub(super) redis: Option<Redis>,
    pub(super) databases: BTreeMap<String, Arc<Database>>,
    pub(super) resources: BTreeMap<String, Arc<Resource>>,
    pub(super) limits: BTreeMap<String, Arc<Limits>>,
}

impl Resources {
    /// Builds them for `config`, reusing what `previous` built from equal settings.
    pub(super) fn build(
        config: &Config,
        previous: Option<&Generation>,
        metrics: &Metrics,
    ) -> Result<Self, BuildError> {
        let mut upstreams = BTreeMap::new();
        for (name, settings) in &config.upstreams {
            let old = previous.and_then(|p| p.upstreams.get(name));
            let client = reuse(
                old,
                |client| client.config() == settings,
                || Ok::<_, BuildError>(Arc::new(UpstreamClient::new(Arc::clone(settings)))),
            )?;
            upstreams.insert(name.clone(), client);
        }
        let cursors = match &config.cursors {
            None => None,
            Some(settings) => Some(reuse(
                previous.and_then(|p| p.cursors.as_ref()),
                |(old, _)| old == settings,
                || {
                    let codec = CursorCodec::new(settings.keys.clone(), settings.ttl)
                        .ok_or(BuildError::Cursors)?;
                    Ok::<_, BuildError>((settings.clone(), Arc::new(codec)))
                },
            )?),
        };
        let budget = (config.max_held_bytes, config.max_held_bytes_per_client);
        let room = reuse(
            previous.map(|p| &p.room),
            |room| room.settings() == budget,
            || {
                let cuts = metrics.protection("held_stream_cut");
                Ok::<_, BuildError>(HeldBudget::counted(budget.0, budget.1, cuts))
            },
        )?;
        let redis = match &config.redis {
            None => None,
            Some(settings) => Some(reuse(
                previous.and_then(|p| p.redis.as_ref()),
                |redis| redis.config() == settings,
                || Redis::new(settings.clone()).map_err(|e| BuildError::Redis(e.to_string())),
            )?),
        };
        let mut databases = BTreeMap::new();
        for (name, settings) in &config.postgres {
            let database = reuse(
                previous.and_then(|p| p.databases.get(name)),
                |db| db.config() == settings,
                || Ok::<_, BuildError>(Arc::new(Database::new(name, Arc::clone(settings))?)),
            )?;
            databases.insert(name.clone(), database);
        }
        let resources = resources(config, previous, &databases, cursors.as_ref())?;
        let limits = limits(config, previous, redis.as_ref());
        Ok(Self {
            upstreams,
            cursors,
            room,
            redis,
            databases,
            resources,
            limits,
        })
    }
}

/// Table routes' resources, by route name.
fn resources(
    config: &Config,
    previous: Option<&Generation>,
    databases: &BTreeMap<String, Arc<Database>>,
    cursors: Option<&(CursorSettings, Arc<CursorCodec>)>,
) -> Result<BTreeMap<String, Arc<Resource>>, BuildError> {
    let mut routes_on: BTreeMap<&str, usize> = BTreeMap::new();
    for route in &config.routes {
        if let Target::Table(table) = &route.target {
            *routes_on.entry(table.database.as_str()).or_default() += 1;
        }
    }
    let mut resources = BTreeMap::new();
    for route in &config.routes {
        let Target::Table(table) = &route.target else {
            continue;
        };
        let database = databases
            .get(&table.database)
            .ok_or_else(|| BuildError::UnknownDatabase(table.database.clone()))?;
        // A route holds at most its share of the pool: all of it when it is the database's
        // only table route, else half (rounded up), unless `max_connections` says.
        let pool_size = database.config().pool_size.get();
        let alone = routes_on.get(table.database.as_str()) == Some(&1);
        let share = table.max_connections.map_or(
            if alone {
                pool_size
            } else {
                pool_size.div_ceil(2)
            },
            NonZeroUsize::get,
        );
        let codec = cursors
            .map(|(_, c)| Arc::clone(c))
            .ok_or(BuildError::Cursors)?;
        let old = previous.and_then(|p| p.resources.get(&route.name));
        // Kept while nothing it was built from changed: its share's places stay counted.
        let resource = reuse(
            old,
            |r| {
                r.table() == table
                    && r.path() == route.path
                    && r.share() == share
                    && Arc::ptr_eq(r.database(), database)
                    && Arc::ptr_eq(r.codec(), &codec)
            },
            || {
                let place = (Arc::clone(database), share, old.map(AsRef::as_ref));
                let codec = Arc::clone(&codec);
                let new = Resource::new(&route.name, &route.path, Arc::clone(table), place, codec);
                Ok::<_, BuildError>(new)
            },
        )?;
        if old.is_some_and(|old| Arc::ptr_eq(old, &resource)) {
            // Its columns are read again all the same: a reload never serves with types read
            // before it.
            resource.reread();
        }
        resources.insert(route.name.clone(), resource);
    }
    Ok(resources)
}

/// Limiters, by route name: reused while a route keeps its name and its limits, so buckets and
/// slots survive a reload.
fn limits(
    config: &Config,
    previous: Option<&Generation>,
    redis: Option<&Redis>,
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
            |limits| limits.reusable(settings, redis),
            || Ok::<_, Infallible>(Limits::new(settings.clone(), name, redis)),
        );
        limits.insert(name.to_owned(), route);
    }
    limits
}
