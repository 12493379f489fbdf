//! Limits shared by every replica through Redis (`store: redis`): request rates by GCRA and
//! concurrency slots as leases in sorted sets, both taken in one Lua script, one round trip
//! per request, that reads Redis's own clock (`TIME`), so the replicas' clocks never matter.
//! Leases are renewed while the body streams and expire after `lease_ttl`, so a replica that
//! dies cannot hold slots for longer; one task per route renews and gives them back in
//! batches ([`leases`]), so a request costs one round trip of its own. The requests of one
//! runtime turn share that round trip and one script run ([`coalesce`]).
//!
//! Every call has a short timeout (`redis.timeout`); when Redis cannot answer, the route's
//! `on_redis_error` decides: `open` falls back to this process's own limiters, `closed`
//! refuses with 503. The connection manager reconnects on its own: Redis coming back is
//! picked up by the next request, without a restart.
//!
//! Redis may be one server, a Cluster (every key of a route carries the route's `{hash tag}`,
//! so one script's keys live on one shard and each route's counters on one node), or a master
//! behind Sentinel.

use std::sync::Arc;
use std::time::Duration;

use super::ClientKey;
use super::concurrency::Full;
use super::health::Health;
use super::rate::{Fields, Refused, Which};
use super::tenant::Tier;
use crate::limit::config::Rate;
use crate::telemetry::RouteMetrics;

mod answer;
mod batched;
mod coalesce;
mod connection;
mod leases;
mod scripts;
mod sentinel;

use batched::{Batched, Checked};
use coalesce::Coalesce;
pub(crate) use connection::Redis;
pub(crate) use connection::RedisError;
pub(crate) use leases::Lease;
use leases::{Keeper, Pending};

/// Leases or keys one script call renews, gives back or flushes at most: bounds its
/// arguments (a Lua `unpack` must fit Lua's stack) and how long Redis runs it.
const BATCH: usize = 256;

/// One route's shared limits.
#[derive(Debug)]
pub(crate) struct Shared {
    redis: Redis,
    route: String,
    /// Each tenant class's name, per-client rate and cap (class 0: the default).
    classes: Vec<Tier>,
    rate_per_address: Option<Rate>,
    rate_total: Option<Rate>,
    total: Option<u32>,
    /// Redis is failing: logged once when it starts and once when it ends.
    health: Health,
    /// Places of this process's requests waiting for a shared slot (made at the first wait,
    /// with the route's queue size).
    places: std::sync::OnceLock<Arc<super::queue::Places>>,
    /// Renews and gives back the route's leases.
    keeper: Arc<Keeper>,
    /// `limits.batch`: rates decided here and flushed to Redis together.
    batched: Option<Arc<Batched>>,
    /// `TAKE` calls of one runtime turn, sent in one script run.
    coalesce: Coalesce,
    /// Each class's `RateLimit-Policy`, made once.
    policies: Vec<Option<http::HeaderValue>>,
}

impl Shared {
    /// The shared limits of `route`: each class's per-client ones, the per-address rate and
    /// the route's totals (`rates`: per address, total; `total`: requests in flight); rates
    /// flushed every `batch.0`, for at most `batch.1` keys, when batched.
    pub(crate) fn new(
        redis: Redis,
        route: &str,
        classes: Vec<Tier>,
        (rates, total): ((Option<Rate>, Option<Rate>), Option<u32>),
        batch: Option<(Duration, usize)>,
    ) -> Self {
        let per_client: Vec<_> = classes.iter().map(|class| class.rate).collect();
        Self {
            policies: super::rate::class_policies(&per_client, rates.0, rates.1),
            batched: batch.map(|(every, cap)| Batched::new(redis.clone(), every, cap)),
            keeper: Keeper::new(redis.clone()),
            redis,
            route: route.to_owned(),
            classes,
            rate_per_address: rates.0,
            rate_total: rates.1,
            total,
            health: Health::default(),
            places: std::sync::OnceLock::new(),
            coalesce: Coalesce::default(),
        }
    }

    /// A place for `key`'s request in this process's queue of at most `size` waiting
    /// requests, at most `per_client` of them one client's.
    pub(crate) fn enqueue(
        &self,
        size: u32,
        key: ClientKey,
    ) -> Result<super::queue::Place, super::queue::NoPlace> {
        self.places
            .get_or_init(|| {
                let caps = self.classes.iter().map(|c| c.concurrency).collect();
                super::queue::Places::new(size, caps)
            })
            .take(key)
    }

    /// A class's limits (the default's for a class this route does not have).
    fn class(&self, class: usize) -> &Tier {
        self.classes.get(class).unwrap_or(&self.classes[0])
    }

    /// Whether `client`'s requests take a shared slot: its class has a concurrency cap, or the
    /// route a total.
    pub(crate) fn caps(&self, client: &ClientKey) -> bool {
        self.class(client.class()).concurrency.is_some() || self.total.is_some()
    }

    /// A class's per-client rate: its own, or the default's.
    fn rate_of(&self, class: usize) -> Option<Rate> {
        self.class(class).rate.or(self.classes[0].rate)
    }

    fn key(&self, kind: &str, scope: Option<&ClientKey>) -> String {
        let prefix = &self.redis.config.key_prefix;
        // The route name in braces: a Redis Cluster keeps one route's keys in one slot. An
        // override's clients have buckets of their own (its rate is another GCRA).
        match scope {
            // Its own rate only: slots are counted per key whatever the class (as locally),
            // and a class without a rate shares the default's buckets.
            Some(client)
                if kind == "rate"
                    && client.class() > 0
                    && self.class(client.class()).rate.is_some() =>
            {
                let class = &self.class(client.class()).name;
                let (route, short) = (&self.route, client.short());
                format!("{prefix}:{kind}:{{{route}}}:t:{class}:c:{short}")
            }
            Some(client) => format!("{prefix}:{kind}:{{{}}}:c:{}", self.route, client.short()),
            None => format!("{prefix}:{kind}:{{{}}}:total", self.route),
        }
    }

    /// Notes Redis's health: the first failure and the recovery are logged, once each.
    pub(crate) fn health<T>(&self, answer: &Result<T, NoAnswer>) {
        if !self.health.changed(answer.is_err()) {
            return;
        }
        match answer.as_ref().map_err(|failed| &failed.error) {
            Ok(_) => {
                tracing::info!(route = %self.route, "redis answers again; shared limits are back");
            }
            Err(error) => {
                tracing::warn!(route = %self.route, %error, "redis cannot answer; on_redis_error applies until it does");
            }
        }
    }

    /// Takes one request from the client's and the route's shared budgets (`rate`) and a
    /// shared slot (`slot`), in one round trip: the rate's verdict and fields, when asked for,
    /// and the slot or which limit is full, when asked for and the rate let the request on.
    /// With `limits.batch` the rates are decided on this process's view ([`Batched`]), and
    /// only a slot costs a round trip.
    pub(crate) async fn take(
        &self,
        client: &ClientKey,
        (rate, slot): (bool, bool),
        metrics: &RouteMetrics,
    ) -> Result<Taken, NoAnswer> {
        if rate && let Some(batched) = &self.batched {
            let call = self.call(client, true, false);
            let evicted = |n| metrics.limit_evicted(n);
            if let Checked::Answer(answer) = batched.check(&call.keys, &call.rates, evicted).await?
            {
                let mut taken = self.read(&answer, &call, None)?;
                if slot && matches!(taken.rate, Some((Ok(()), _))) {
                    match self.take_exact(client, false, true).await {
                        Ok(exact) => taken.slot = exact.slot,
                        // The rate is decided and counted; only the slot has no answer.
                        Err(error) => {
                            let rate = taken.rate;
                            return Err(NoAnswer { error, rate });
                        }
                    }
                }
                return Ok(taken);
            }
        }
        Ok(self.take_exact(client, rate, slot).await?)
    }

    /// [`Self::take`] in one round trip: the rates and a slot in one script run.
    async fn take_exact(
        &self,
        client: &ClientKey,
        rate: bool,
        slot: bool,
    ) -> Result<Taken, RedisError> {
        let mut call = self.call(client, rate, slot);
        let id = self.keeper.next_id();
        // Redis may have taken the lease even if its answer never arrives (a timeout, a client
        // that left): until the answer is read, dropping this gives it back.
        let pending = Pending {
            keeper: Arc::clone(&self.keeper),
            sets: call.slot_keys.clone(),
            id,
            armed: !call.fulls.is_empty(),
        };
        let request = coalesce::Request {
            keys: std::mem::take(&mut call.keys),
            rates: std::mem::take(&mut call.rates),
            caps: call.fulls.iter().map(|&full| full.limit()).collect(),
            // The script reads a lease id only when it takes a slot.
            lease: if call.fulls.is_empty() {
                String::new()
            } else {
                self.keeper.member(id)
            },
            ttl_ms: u64::try_from(self.redis.config.lease_ttl.as_millis()).unwrap_or(u64::MAX),
        };
        let (answer, mut pending) = self.coalesce.take(&self.redis, request, pending).await?;
        // A request whose keys failed ({3}) may have left a lease behind: given back.
        pending.armed &= answer == [3];
        self.read(&answer, &call, Some(pending))
    }

    /// The script's keys and arguments for [`Self::take`], rate keys first, then slot keys.
    fn call(&self, client: &ClientKey, rate: bool, slot: bool) -> Call {
        let mut call = Call {
            class: client.class(),
            keys: Vec::with_capacity(2),
            rates: Vec::new(),
            limits: Vec::new(),
            fulls: Vec::new(),
            slot_keys: Vec::new(),
        };
        let class = self.class(client.class());
        if rate {
            let address = client.of_address();
            for (rate, kind, scope, which, name) in [
                (
                    self.rate_of(client.class()),
                    "rate",
                    Some(client),
                    Which::PerClient,
                    "client",
                ),
                (
                    self.rate_per_address,
                    "rate-address",
                    Some(&address),
                    Which::PerAddress,
                    "address",
                ),
                (self.rate_total, "rate", None, Which::Total, "route"),
            ] {
                let Some(rate) = rate else { continue };
                // Years of tolerance saturate rather than wrap.
                let micros = |n: u128| i64::try_from(n).unwrap_or(i64::MAX / 4).min(i64::MAX / 4);
                let interval = (rate.per.as_micros() / u128::from(rate.requests.get())).max(1);
                let tolerance = interval * u128::from(rate.burst.get() - 1);
                call.keys.push(self.key(kind, scope));
                call.rates.push((micros(interval), micros(tolerance)));
                call.limits.push((rate, which, name));
            }
        }
        if slot {
            for (n, scope, full) in [
                (
                    class.concurrency,
                    Some(client),
                    Full::PerClient as fn(u32) -> Full,
                ),
                (self.total, None, Full::Total),
            ] {
                let Some(n) = n else { continue };
                call.slot_keys.push(self.key("slots", scope));
                call.fulls.push(full(n));
            }
        }
        call.keys.extend(call.slot_keys.iter().cloned());
        call
    }
}

/// One call of the limits script: its keys and arguments, the rate limits in the order their
/// answers come, the slot limits likewise, and the slot keys a lease is held under.
struct Call {
    /// The tenant class of the client.
    class: usize,
    keys: Vec<String>,
    /// Each rate key's emission interval and delay tolerance (µs).
    rates: Vec<(i64, i64)>,
    limits: Vec<(Rate, Which, &'static str)>,
    fulls: Vec<Full>,
    slot_keys: Vec<String>,
}

/// What one [`Shared::take`] gave.
#[derive(Debug)]
pub(crate) struct Taken {
    /// The rate's verdict and fields, when asked for.
    pub(crate) rate: Option<(Result<(), Refused>, Fields)>,
    /// The slot, or which limit is full: when asked for and the rate let the request on.
    pub(crate) slot: Option<Result<Lease, Full>>,
}

/// [`Shared::take`] without Redis's answer: why, and the verdict batched rates had given
/// before a slot's call failed (`rate`: the request is counted, a fallback must not count it
/// again).
#[derive(Debug)]
pub(crate) struct NoAnswer {
    pub(crate) error: RedisError,
    pub(crate) rate: Option<(Result<(), Refused>, Fields)>,
}

impl From<RedisError> for NoAnswer {
    fn from(error: RedisError) -> Self {
        Self { error, rate: None }
    }
}
