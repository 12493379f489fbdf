//! Quotas of rows or bytes per client key (`limits.quota`), charged as an answer streams:
//! Envoy Gateway's `cost.response`, for exports. Each key's level refills evenly, `amount`
//! per `per`, up to `amount`; an answer spends it as its rows (table exports) or bytes (any
//! answer) go out, and may take it below zero with `on_exceed: finish`. A new request of a
//! key whose level holds less than one unit is refused 429; with `on_exceed: cut`, an answer whose
//! next chunk or frame does not fit ends there with an error ([`crate::body::Truncation`]),
//! and what was left of the level goes with it.
//!
//! Memory is bounded as the rate limiters' is: at most `max_clients` keys, those whose level
//! is full again forgotten by housekeeping (woken, as for rates, when a newcomer finds the
//! cap); while none can be, new keys share one level. The levels are a sharded map, so a
//! charge locks one shard and a housekeeping pass one shard at a time.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use dashmap::DashMap;
use tokio::time::Instant;

use super::ClientKey;
use super::config::{OnExceed, QuotaConfig, QuotaUnit};
use super::error::{LimitError, QuotaSpent, Refusal};
use super::rls::ServiceCost;
use crate::telemetry::RouteMetrics;

/// One key's level and when it was last brought up to date.
#[derive(Debug, Clone, Copy)]
struct Level {
    /// Units left; below zero after an answer that finished past the quota.
    left: f64,
    at: Instant,
}

/// A route's quota levels.
#[derive(Debug)]
pub(crate) struct Quotas {
    config: QuotaConfig,
    levels: DashMap<ClientKey, Level>,
    /// The level new keys share at the cap.
    overflow: Mutex<Level>,
    cap: usize,
    /// Counts uses of `overflow` and wakes the route's housekeeping.
    at_cap: super::rate::AtCap,
}

impl Quotas {
    /// At most `cap.max` keys; uses of the level new keys share past it counted in
    /// `cap.overflow`, and each wakes the route's housekeeping (at most once a second).
    pub(crate) fn new(config: QuotaConfig, cap: &super::rate::KeyCap) -> Self {
        let full = Level {
            left: config.amount as f64,
            at: Instant::now(),
        };
        Self {
            config,
            levels: DashMap::new(),
            overflow: Mutex::new(full),
            cap: cap.max.get(),
            at_cap: super::rate::AtCap::new(cap),
        }
    }

    /// Units refilled per second.
    fn rate(&self) -> f64 {
        self.config.amount as f64 / self.config.per.as_secs_f64()
    }

    /// Applies `f` to `key`'s level, brought up to date.
    fn with<T>(&self, key: &ClientKey, f: impl FnOnce(&mut f64) -> T) -> T {
        let now = Instant::now();
        let (amount, rate) = (self.config.amount as f64, self.rate());
        let update = |level: &mut Level| {
            let elapsed = now.saturating_duration_since(level.at).as_secs_f64();
            level.left = (level.left + elapsed * rate).min(amount);
            level.at = now;
            f(&mut level.left)
        };
        // Held keys and room for more (a race may pass the cap by a key a worker).
        if let Some(mut level) = self.levels.get_mut(key) {
            return update(&mut level);
        }
        if self.levels.len() < self.cap {
            let fresh = Level {
                left: amount,
                at: now,
            };
            return update(&mut self.levels.entry(*key).or_insert(fresh));
        }
        self.at_cap.overflowed();
        self.at_cap.tidy_if_due();
        update(&mut self.overflow.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Whether `key` may start an answer: `Err` with when it may again.
    pub(crate) fn admit(&self, key: &ClientKey) -> Result<(), QuotaSpent> {
        let left = self.with(key, |left| *left);
        // A whole unit at least: a level a cut emptied refills by fractions at once.
        if left >= 1.0 {
            return Ok(());
        }
        // Until the level holds a whole unit again.
        let wait = (1.0 - left) / self.rate();
        let retry_after = Duration::from_secs_f64(wait.min(86_400.0 * 366.0));
        Err(QuotaSpent {
            amount: self.config.amount,
            unit: self.config.unit,
            per_secs: u32::try_from(self.config.per.as_secs()).unwrap_or(u32::MAX),
            retry_after: super::rate::ceil_secs(retry_after).max(1),
        })
    }

    /// Spends up to `n` units of `key`'s level and says how many: all `n` unless the route
    /// cuts and fewer are left, in which case what is left is spent with the answer, which
    /// ends there (so the next one waits for the refill instead of starting only to be cut at
    /// once).
    pub(crate) fn spend(&self, key: &ClientKey, n: u64, cut: bool) -> u64 {
        self.with(key, |left| {
            let wanted = n as f64;
            if !cut || *left >= wanted {
                *left -= wanted;
                return n;
            }
            let allowed = left.max(0.0).floor();
            *left -= allowed;
            allowed as u64
        })
    }

    /// Forgets keys whose level is full again (they lose nothing).
    pub(crate) fn housekeep(&self) {
        let now = Instant::now();
        let (amount, rate) = (self.config.amount as f64, self.rate());
        self.levels.retain(|_, level| {
            let elapsed = now.saturating_duration_since(level.at).as_secs_f64();
            level.left + elapsed * rate < amount
        });
        self.levels.shrink_to_fit();
    }

    /// Keys whose level is kept now.
    pub(crate) fn clients(&self) -> usize {
        self.levels.len()
    }
}

/// One answer's charge: what it spends, from whose level, counted where, and what it owes
/// the rate-limit service.
#[derive(Debug, Clone)]
pub(crate) struct Charge {
    /// The route's quota levels (`limits.quota`), if it has one.
    pub(crate) quotas: Option<Arc<Quotas>>,
    /// What the answer owes the rate-limit service (`limits.cost.response`), sent every
    /// `cost.every` while it streams and the rest when the last clone of the charge goes
    /// (the answer has ended).
    pub(crate) service: Option<Arc<ServiceCost>>,
    pub(crate) key: ClientKey,
    pub(crate) metrics: Arc<RouteMetrics>,
    pub(crate) class: Arc<str>,
    /// Report-only: counted, never refused or cut.
    pub(crate) report_only: bool,
}

impl Charge {
    /// Whether the quota or the service's cost counts `unit`.
    pub(crate) fn counts(&self, unit: QuotaUnit) -> bool {
        self.quota(unit).is_some() || self.service.as_ref().is_some_and(|s| s.unit() == unit)
    }

    /// The quota, when it counts `unit`.
    fn quota(&self, unit: QuotaUnit) -> Option<&Quotas> {
        self.quotas.as_deref().filter(|q| q.config.unit == unit)
    }

    /// Whether the answer may start, by the quota that counts `unit`; the refusal otherwise
    /// (counted; in report-only mode counted as `reported` and let through).
    pub(crate) fn admit(&self, unit: QuotaUnit) -> Result<(), LimitError> {
        let Some(quotas) = self.quota(unit) else {
            return Ok(());
        };
        let Err(spent) = quotas.admit(&self.key) else {
            return Ok(());
        };
        let decision = if self.report_only {
            "reported"
        } else {
            "refused"
        };
        self.metrics.limit("quota", decision, &self.class);
        if self.report_only {
            return Ok(());
        }
        Err(LimitError {
            refusal: Refusal::Quota(spent),
            fields: Some(fields(&quotas.config, spent.retry_after)),
        })
    }

    /// Spends up to `n` units of `unit` as they go out and says how many may go: fewer than
    /// `n` when the answer must be cut (a byte quota sends those; an export sends no part of
    /// a chunk). The service is owed what goes out.
    pub(crate) fn spend(&self, unit: QuotaUnit, n: u64) -> u64 {
        let allowed = match self.quota(unit) {
            Some(quotas) => {
                let cut = quotas.config.on_exceed == OnExceed::Cut && !self.report_only;
                let allowed = quotas.spend(&self.key, n, cut);
                if allowed < n {
                    self.metrics.limit("quota", "cut", &self.class);
                }
                allowed
            }
            None => n,
        };
        if let Some(service) = self.service.as_ref().filter(|s| s.unit() == unit) {
            // Rows go out in whole chunks: a chunk that does not fit is not sent at all.
            let sent = if allowed == n || unit == QuotaUnit::Bytes {
                allowed
            } else {
                0
            };
            service.add(sent);
        }
        allowed
    }
}

/// The `RateLimit-Policy` and `RateLimit` fields of a spent quota.
fn fields(quota: &QuotaConfig, retry_after: u64) -> super::Fields {
    let units = match quota.unit {
        QuotaUnit::Bytes => ";qu=\"content-bytes\"",
        QuotaUnit::Rows => "",
    };
    let policy = format!(
        "\"quota\";q={};w={}{units}",
        quota.amount,
        quota.per.as_secs()
    );
    super::rate::fields(&policy, &format!("\"quota\";r=0;t={retry_after}"))
}

mod body;

pub(crate) use body::QuotaBody;

#[cfg(test)]
mod tests;
