//! A route's limiters ([`Limits`]) and the decision each request gets: rate first, then a
//! concurrency slot (local, queued or shared through Redis), or what report-only mode would do.

use std::sync::{Arc, Weak};

use prometheus_client::metrics::counter::Counter;

use super::concurrency::Slots;
use super::rate::{KeyCap, Rates};
use super::shared::Shared;
use crate::limit::config::{LimitStore, LimitsConfig, OnRedisError};
use crate::limit::pace::Pacer;
use crate::limit::{
    ClientKey, Fields, Full, HOUSEKEEPING, LimitError, NoSlot, RateLimitService, Redis, Refusal,
    Refused, Stores,
};
use crate::telemetry::RouteMetrics;

mod notes;
mod service;
mod shared;

use super::tenant::{self, Tier};
pub(crate) use notes::{Deciding, Decision, LimitsWouldRefuse, Notes};

/// A route's limiters, built from its [`LimitsConfig`]; a new generation reuses them while the
/// route's name and limits are unchanged, so buckets and slots survive a reload.
#[derive(Debug)]
pub struct Limits {
    pub(super) config: LimitsConfig,
    rates: Option<Rates>,
    slots: Option<Arc<Slots>>,
    /// `store: redis`: the shared limiters (the local ones above are the fallback).
    pub(super) shared: Option<Arc<Shared>>,
    redis: Option<crate::limit::config::RedisConfig>,
    /// `store: envoy_rls`: the service that decides rates (the local ones are the fallback).
    pub(super) rls: Option<RateLimitService>,
    /// `pace`: the route's byte buckets.
    pub(super) pacer: Option<Arc<Pacer>>,
    /// Its tenant classes (the default first).
    classes: Vec<Tier>,
    /// `quota`: each key's rows or bytes left.
    pub(super) quotas: Option<Arc<super::quota::Quotas>>,
}

impl Limits {
    /// Builds the limiters of route `route`, shared through `redis` when its `store` says so,
    /// and starts their housekeeping when a runtime is running.
    pub fn new(config: LimitsConfig, route: &str, redis: Option<&Redis>) -> Arc<Self> {
        let stores = Stores { redis, rls: None };
        Self::with_stores(config, route, stores, Counter::default())
    }

    /// [`Self::new`] with every shared store the generation has, counting decisions on the
    /// bucket new clients share at `max_clients` in `overflow`.
    pub(crate) fn with_stores(
        config: LimitsConfig,
        route: &str,
        stores: Stores<'_>,
        overflow: Counter,
    ) -> Arc<Self> {
        let Stores { redis, rls } = used(&config, stores);
        let rls = rls.cloned();
        let classes = tenant::tiers(&config);
        let total = config.concurrency_total.map(|n| n.get());
        let shared = redis.map(|redis| {
            let rates = (config.rate_per_address, config.rate_total);
            let batch = config.batch.map(|every| (every, config.max_clients.get()));
            Arc::new(Shared::new(
                redis.clone(),
                route,
                classes.clone(),
                (rates, total),
                batch,
            ))
        });
        let rates: Vec<_> = classes.iter().map(|c| c.rate).collect();
        let caps: Vec<_> = classes.iter().map(|c| c.concurrency).collect();
        let cap = KeyCap {
            max: config.max_clients,
            overflow,
            tidy: Arc::default(),
        };
        let limits = Arc::new(Self {
            shared,
            rls,
            redis: redis.map(|r| r.config().clone()),
            rates: Rates::new((&rates, config.rate_per_address), config.rate_total, &cap),
            slots: Slots::tiered(&caps, total, config.queue),
            classes,
            quotas: config
                .quota
                .map(|q| Arc::new(super::quota::Quotas::new(q, &cap))),
            pacer: config.pace.map(|pace| Arc::new(Pacer::new(pace, &cap))),
            config,
        });
        if (limits.rates.is_some() || limits.pacer.is_some() || limits.quotas.is_some())
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(housekeeping(Arc::downgrade(&limits), cap.tidy));
        }
        limits
    }

    /// The config these limiters were built from.
    pub fn config(&self) -> &LimitsConfig {
        &self.config
    }

    /// Whether a new generation may keep these limiters: the same limits, and for shared
    /// ones the same Redis or rate-limit service.
    pub(crate) fn reusable(&self, config: &LimitsConfig, stores: Stores<'_>) -> bool {
        let Stores { redis, rls } = used(config, stores);
        let (redis, rls) = (redis.map(Redis::config), rls.map(RateLimitService::config));
        &self.config == config
            && self.redis.as_ref() == redis
            && self.rls.as_ref().map(RateLimitService::config) == rls
    }

    /// Clients whose rate state is kept now (the memory bound's subject).
    pub fn clients(&self) -> usize {
        self.rates.as_ref().map_or(0, Rates::clients)
            + self.quotas.as_ref().map_or(0, |q| q.clients())
    }

    /// Forgets clients whose buckets are full (also done on a timer).
    pub fn housekeep(&self) {
        if let Some(rates) = &self.rates {
            rates.housekeep();
        }
        if let Some(pacer) = &self.pacer {
            pacer.housekeeping();
        }
        if let Some(quotas) = &self.quotas {
            quotas.housekeep();
        }
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> u32 {
        self.slots.as_ref().map_or(0, |s| s.in_flight())
    }

    /// The notes of a request by `key`, named by its tenant class.
    pub(crate) fn notes(&self, key: &ClientKey) -> Notes {
        let class = self.classes.get(key.class()).unwrap_or(&self.classes[0]);
        Notes::new(Arc::clone(&class.name))
    }
}

/// Whether `config`'s limits live in Redis: `store: redis` and something to share (pacing is
/// per process, so a route with only `pace` makes no Redis call).
fn shares(config: &LimitsConfig) -> bool {
    config.store == LimitStore::Redis
        && (config.rate_per_client.is_some()
            || config.rate_total.is_some()
            || config.concurrency_per_client.is_some()
            || config.concurrency_total.is_some()
            || config
                .overrides
                .iter()
                .any(|o| o.rate.is_some() || o.concurrency.is_some()))
}

/// The stores `config`'s limits use of those the generation has.
fn used<'a>(config: &LimitsConfig, stores: Stores<'a>) -> Stores<'a> {
    Stores {
        redis: stores.redis.filter(|_| shares(config)),
        rls: stores.rls.filter(|_| config.store == LimitStore::EnvoyRls),
    }
}

/// Forgets full buckets every [`HOUSEKEEPING`] while the limiters are alive.
pub(super) async fn housekeeping(limits: Weak<Limits>, tidy: Arc<super::rate::Tidy>) {
    let mut tick = tokio::time::interval(HOUSEKEEPING);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        // Every HOUSEKEEPING, or sooner when a keyed map is at its cap (at most once a second).
        tokio::select! {
            _ = tick.tick() => {}
            () = tidy.notify.notified() => {}
        }
        let Some(limits) = limits.upgrade() else {
            return;
        };
        // A pass walks every key (up to `max_clients` of each map): on a blocking thread, so
        // the runtime's workers serve requests meanwhile.
        if let Err(error) = tokio::task::spawn_blocking(move || limits.housekeep()).await {
            // A pass that failed is tried again at the next tick or wake.
            tracing::error!(%error, "limits housekeeping failed");
        }
    }
}

impl Limits {
    /// Applies a rate verdict: refuses, or notes a report-only refusal and goes on.
    fn rate_verdict(
        &self,
        verdict: Result<(), Refused>,
        fields: Option<Fields>,
        notes: &mut Notes,
        metrics: &RouteMetrics,
    ) -> Result<(), LimitError> {
        if let Err(refused) = verdict {
            let error = LimitError {
                refusal: Refusal::Rate(refused),
                fields: fields.clone(),
            };
            if notes.refused(&error, metrics, self.config.report_only) {
                return Err(error);
            }
        }
        notes.fields = fields;
        Ok(())
    }

    /// A full slot limit: wait in the local queue, refuse, or (report-only) go on.
    fn no_slot(
        self: &Arc<Self>,
        key: ClientKey,
        full: Full,
        mut notes: Notes,
        metrics: &Arc<RouteMetrics>,
    ) -> Decision {
        let Some(slots) = self.slots.as_ref() else {
            return Decision::Go(None, notes);
        };
        if !self.config.report_only && slots.queues() {
            let slots = Arc::clone(slots);
            let metrics = Arc::clone(metrics);
            return Decision::Later(Box::pin(async move {
                match slots.wait(key, full).await {
                    Ok(slot) => Ok((Some(slot), notes)),
                    Err(no_slot) => {
                        let error = LimitError {
                            refusal: Refusal::Concurrency(no_slot),
                            fields: notes.fields.clone(),
                        };
                        notes.count(&metrics, error.limit(), "refused");
                        Err(error)
                    }
                }
            }));
        }
        let error = LimitError {
            refusal: Refusal::Concurrency(NoSlot::Full(full)),
            fields: notes.fields.clone(),
        };
        if notes.refused(&error, metrics, self.config.report_only) {
            return Decision::Refuse(error);
        }
        Decision::Go(None, notes)
    }

    /// This process's limiters (also the fallback of shared ones under `on_redis_error: open`).
    pub(super) fn decide_local(
        self: &Arc<Self>,
        key: ClientKey,
        mut notes: Notes,
        metrics: &Arc<RouteMetrics>,
        rate: bool,
    ) -> Decision {
        if rate && let Some(rates) = &self.rates {
            let (verdict, fields) = rates.check(&key);
            if let Err(error) = self.rate_verdict(verdict, Some(fields), &mut notes, metrics) {
                return Decision::Refuse(error);
            }
        }
        match self.slots.as_ref().map(|slots| slots.try_take(key)) {
            None => Decision::Go(None, notes),
            Some(Ok(slot)) => Decision::Go(Some(slot), notes),
            Some(Err(full)) => self.no_slot(key, full, notes, metrics),
        }
    }

    /// Redis could not answer: `open` goes on with the local limiters, `closed` refuses (in
    /// report-only mode: says it would have, and goes on with the local limiters).
    fn redis_failed(&self, notes: &mut Notes, metrics: &RouteMetrics) -> Result<(), LimitError> {
        match self.config.on_redis_error {
            OnRedisError::Open => {
                let store = super::error::store_label(self.config.store);
                notes.count(metrics, store, "fallback");
                Ok(())
            }
            OnRedisError::Closed => {
                let error = LimitError {
                    refusal: Refusal::Unavailable(self.config.store),
                    fields: notes.fields.clone(),
                };
                if notes.refused(&error, metrics, self.config.report_only) {
                    return Err(error);
                }
                Ok(())
            }
        }
    }
}
