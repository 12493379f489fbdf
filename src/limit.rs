//! Rate and concurrency limits per route ([`LimitLayer`]), keyed per client ([`ClientKey`]):
//! GCRA request rates per client and per route (`rate`), requests in flight per client and
//! per route, held until the answer's body ends (`concurrency`), the IETF `RateLimit-Policy`
//! and `RateLimit` fields on every answer of a rate-limited route, and a report-only mode that
//! evaluates, counts and reports but lets everything through.
//!
//! A refused request never reaches the backend: the layer returns early with a [`LimitError`],
//! which the route's rescue answers 429 (the client's limits, any rate) or 503 (the route's
//! total in flight) with `Retry-After`.

use std::time::Duration;

mod concurrency;
pub(crate) mod config;
mod decide;
mod error;
mod health;
mod key;
mod layer;
mod pace;
mod queue;
pub(crate) mod quota;
pub(crate) mod rate;
mod rls;
mod shared;
pub(crate) mod tenant;

pub(crate) use concurrency::{Full, NoSlot, SlotBody};
pub use decide::Limits;
pub(crate) use decide::LimitsWouldRefuse;
pub(crate) use error::LimitError;
pub(crate) use error::Refusal;
pub(crate) use key::ClientKey;
pub use layer::LimitLayer;
pub(crate) use quota::Charge;
pub(crate) use rate::{Fields, Refused, Which};
pub(crate) use rls::RateLimitService;
pub(crate) use shared::Redis;

/// The shared stores a generation's limits may use: Redis, the Envoy rate-limit service.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Stores<'a> {
    /// The top-level `redis`.
    pub redis: Option<&'a Redis>,
    /// The top-level `rate_limit_service`.
    pub rls: Option<&'a RateLimitService>,
}

/// `Retry-After` of a concurrency refusal, in seconds: when a slot frees is unknown (an export
/// may stream for minutes), so this is an estimate that keeps retry loops slow (5 seconds).
pub(crate) const CONCURRENCY_RETRY_AFTER: u64 = 5;

/// How often a request queued for a shared (Redis) slot asks again (50 ms).
const SHARED_QUEUE_POLL: Duration = Duration::from_millis(50);

/// How often the per-client rate limiters forget clients whose bucket is full (10 seconds).
const HOUSEKEEPING: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests;
