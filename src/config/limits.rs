//! The typed limits of one route (`routes[].limits`, `default.limits`): who a client is for
//! them, request rates, requests in flight, and whether they are enforced or only reported.

use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use http::HeaderName;

/// A route's rate and concurrency limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// What tells clients apart.
    pub key: ClientKeySource,
    /// Requests one client may make.
    pub rate_per_client: Option<Rate>,
    /// Requests all clients together may make.
    pub rate_total: Option<Rate>,
    /// Requests one client may have in flight.
    pub concurrency_per_client: Option<NonZeroU32>,
    /// Requests all clients together may have in flight.
    pub concurrency_total: Option<NonZeroU32>,
    /// Requests that may wait for a free slot instead of being refused at once.
    pub queue: Option<Queue>,
    /// Evaluate, count and report, but let every request through.
    pub report_only: bool,
    /// Most clients whose rate state is kept (memory bound of the per-client limiter).
    pub max_clients: NonZeroUsize,
}

/// What tells clients apart for a route's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientKeySource {
    /// The client address (`trusted_proxies` decides it; IPv6 by /64).
    Client,
    /// A request header (an API key, a tenant id set by a trusted auth layer), hashed; a
    /// request without it is keyed by its client address.
    Header(HeaderName),
    /// The header and the client address together.
    HeaderAndClient(HeaderName),
}

/// A request rate: `requests` per `per`, at most `burst` at once (GCRA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests allowed per window.
    pub requests: NonZeroU32,
    /// The window (whole seconds).
    pub per: Duration,
    /// Requests allowed at once after a quiet spell.
    pub burst: NonZeroU32,
}

/// A bounded wait for a free concurrency slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queue {
    /// Requests that may wait at once.
    pub size: NonZeroU32,
    /// How long one may wait.
    pub timeout: Duration,
}
