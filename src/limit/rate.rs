//! Request rates (GCRA, governor): one limiter per client key and one for the route in total,
//! and the IETF `RateLimit-Policy` / `RateLimit` fields that describe them
//! (draft-ietf-httpapi-ratelimit-headers-10: `"name";q=5;w=60` and `"name";r=3;t=12`).
//!
//! The per-client limiter's memory is bounded by [`CappedStore`] (see [`capped`]): at most
//! `max_clients` keys; a housekeeping pass (on a timer, and woken at the cap at most once a
//! second) forgets keys whose bucket is full again — they lose nothing.

use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use http::HeaderValue;

use super::ClientKey;
use crate::limit::config::Rate;

mod capped;

pub(crate) use capped::{AtCap, CappedStore, KeyCap, Tidy};

type Keyed<C> = RateLimiter<ClientKey, CappedStore, C, StateInformationMiddleware>;
type Direct<C> = RateLimiter<NotKeyed, InMemoryState, C, StateInformationMiddleware>;

/// Which rate refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// The client's own.
    PerClient,
    /// The address's, whatever header values it sends (`key: header_and_client`).
    PerAddress,
    /// The route's total.
    Total,
    /// The rate-limit service's (`store: envoy_rls`).
    Service,
    /// The rate-limit service's, whose answer named no limit: its `rate` is a placeholder.
    ServiceUnstated,
}

/// A rate refusal: which one and when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// The rate that refused.
    pub which: Which,
    /// The rate's settings.
    pub rate: Rate,
    /// Whole seconds until a request would pass (at least 1).
    pub retry_after: u64,
}

/// The rate fields of one answer.
#[derive(Debug, Clone)]
pub struct Fields {
    /// `RateLimit-Policy`: the same on every answer of the route.
    pub policy: HeaderValue,
    /// `RateLimit`: what is left now.
    pub state: HeaderValue,
}

/// A route's rate limiters.
#[derive(Debug)]
pub(crate) struct Rates<C: Clock = DefaultClock> {
    /// Each tenant class's per-client limiter (class 0: the default).
    per_client: Vec<Option<(Rate, Keyed<C>)>>,
    per_address: Option<(Rate, Keyed<C>)>,
    total: Option<(Rate, Direct<C>)>,
    /// Each class's `RateLimit-Policy`.
    policy: Vec<Option<HeaderValue>>,
    clock: C,
    at_cap: AtCap,
}

fn quota(rate: Rate) -> Quota {
    let interval = rate.per / rate.requests.get();
    Quota::with_period(interval.max(Duration::from_nanos(1)))
        .expect("a period longer than zero")
        .allow_burst(rate.burst)
}

/// Whole seconds, rounded up.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The `RateLimit-Policy` value of a route's rates.
pub(crate) fn policy(
    per_client: Option<Rate>,
    per_address: Option<Rate>,
    total: Option<Rate>,
) -> String {
    let mut policy = Vec::new();
    if let Some(r) = per_client {
        policy.push(format!("\"client\";q={};w={}", r.requests, r.per.as_secs()));
    }
    if let Some(r) = per_address {
        policy.push(format!(
            "\"address\";q={};w={}",
            r.requests,
            r.per.as_secs()
        ));
    }
    if let Some(r) = total {
        policy.push(format!("\"route\";q={};w={}", r.requests, r.per.as_secs()));
    }
    policy.join(", ")
}

/// Each tenant class's `RateLimit-Policy` value, made once (`per_client`: each class's own
/// rate, the default's first; a class without one shows the default's).
pub(crate) fn class_policies(
    per_client: &[Option<Rate>],
    per_address: Option<Rate>,
    total: Option<Rate>,
) -> Vec<Option<HeaderValue>> {
    let default = per_client.first().copied().flatten();
    per_client
        .iter()
        .map(|r| HeaderValue::from_str(&policy(r.or(default), per_address, total)).ok())
        .collect()
}

/// The fields of one answer (values are ASCII by construction).
pub(crate) fn fields(policy: &str, state: &str) -> Fields {
    let policy = HeaderValue::from_str(policy).unwrap_or(HeaderValue::from_static(""));
    state_fields(policy, state)
}

/// The fields of one answer, its route's policy made once.
pub(crate) fn state_fields(policy: HeaderValue, state: &str) -> Fields {
    Fields {
        policy,
        state: HeaderValue::from_str(state).unwrap_or(HeaderValue::from_static("")),
    }
}

impl Rates<DefaultClock> {
    /// The rates of a route whose tenant classes' per-client rates are `per_client` (the
    /// default's first).
    pub(crate) fn new(
        (per_client, per_address): (&[Option<Rate>], Option<Rate>),
        total: Option<Rate>,
        cap: &KeyCap,
    ) -> Option<Self> {
        Self::tiered(
            (per_client, per_address),
            total,
            cap,
            DefaultClock::default(),
        )
    }
}

impl<C: Clock + Clone> Rates<C> {
    /// One class's rates, on `clock`.
    #[cfg(test)]
    pub(crate) fn with_clock(
        (per_client, per_address): (Option<Rate>, Option<Rate>),
        total: Option<Rate>,
        max_clients: std::num::NonZeroUsize,
        clock: C,
    ) -> Option<Self> {
        let cap = KeyCap::detached(max_clients);
        Self::tiered((&[per_client], per_address), total, &cap, clock)
    }

    fn tiered(
        (per_client, per_address): (&[Option<Rate>], Option<Rate>),
        total: Option<Rate>,
        cap: &KeyCap,
        clock: C,
    ) -> Option<Self> {
        if per_client.iter().all(Option::is_none) && total.is_none() {
            return None;
        }
        let at_cap = AtCap::new(cap);
        let keyed = |r: Rate| {
            let store = at_cap.store();
            let limiter: Keyed<C> = RateLimiter::new(quota(r), store, clock.clone());
            (r, limiter)
        };
        Some(Self {
            per_client: per_client.iter().map(|r| r.map(keyed)).collect(),
            per_address: per_address.map(keyed),
            total: total.map(|r| {
                let limiter: Direct<C> =
                    RateLimiter::new(quota(r), InMemoryState::default(), clock.clone());
                (r, limiter)
            }),
            policy: class_policies(per_client, per_address, total),
            clock,
            at_cap,
        })
    }

    /// Takes one request from `key`'s budget and the route's; says what is left either way.
    pub(crate) fn check(&self, key: &ClientKey) -> (Result<(), Refused>, Fields) {
        let mut state = Vec::with_capacity(2);
        let mut verdict = Ok(());
        self.clean_at_cap();
        // A class without a rate of its own (or out of range) uses the default's buckets.
        let own = |c: usize| self.per_client.get(c).and_then(Option::as_ref);
        let class = if own(key.class()).is_some() {
            key.class()
        } else {
            0
        };
        if let Some((rate, limiter)) = own(class) {
            verdict = self.one(
                rate,
                limiter.check_key(key),
                "client",
                Which::PerClient,
                &mut state,
            );
        }
        if let (Some((rate, limiter)), Ok(())) = (&self.per_address, verdict) {
            verdict = self.one(
                rate,
                limiter.check_key(&key.of_address()),
                "address",
                Which::PerAddress,
                &mut state,
            );
        }
        if let (Some((rate, limiter)), Ok(())) = (&self.total, verdict) {
            verdict = self.one(rate, limiter.check(), "route", Which::Total, &mut state);
        }
        let fields = Fields {
            policy: (self.policy.get(key.class()).cloned().flatten())
                .unwrap_or(HeaderValue::from_static("")),
            state: HeaderValue::from_str(&state.join(", ")).unwrap_or(HeaderValue::from_static("")),
        };
        (verdict, fields)
    }

    fn one(
        &self,
        rate: &Rate,
        outcome: Result<governor::middleware::StateSnapshot, governor::NotUntil<C::Instant>>,
        name: &str,
        which: Which,
        state: &mut Vec<String>,
    ) -> Result<(), Refused> {
        let interval = rate.per / rate.requests.get();
        match outcome {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let used = rate.burst.get().saturating_sub(remaining);
                let reset = ceil_secs(interval * used);
                state.push(format!("\"{name}\";r={remaining};t={reset}"));
                Ok(())
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                let retry_after = ceil_secs(wait).max(1);
                state.push(format!("\"{name}\";r=0;t={retry_after}"));
                Err(Refused {
                    which,
                    rate: *rate,
                    retry_after,
                })
            }
        }
    }

    /// When the store sent a new client to the overflow bucket, wakes the housekeeping (at
    /// most once a second: its pass walks every key of every keyed map, which share the flag).
    fn clean_at_cap(&self) {
        self.at_cap.tidy_if_due();
    }

    /// Forgets clients whose bucket is full again (they lose nothing).
    pub(crate) fn housekeep(&self) {
        for (_, limiter) in self.keyed() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Clients whose rate state is kept now.
    pub(crate) fn clients(&self) -> usize {
        self.keyed().map(|(_, l)| l.len()).sum()
    }

    /// Every keyed limiter: each class's per-client one and the per-address one.
    fn keyed(&self) -> impl Iterator<Item = &(Rate, Keyed<C>)> {
        self.per_client.iter().flatten().chain(&self.per_address)
    }
}
