//! Why a route's limits refused a request ([`LimitError`]), and the status each refusal is
//! answered with.

use crate::limit::config::LimitStore;
use crate::limit::{CONCURRENCY_RETRY_AFTER, Fields, Full, NoSlot, Refused, Which};

/// Why a route's limits refused a request.
#[derive(Debug, Clone)]
pub struct LimitError {
    /// What refused it.
    pub refusal: Refusal,
    /// The rate fields to send with the refusal (rate-limited routes only).
    pub fields: Option<Fields>,
}

/// What refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A request rate.
    Rate(Refused),
    /// No free slot.
    Concurrency(NoSlot),
    /// The store (Redis, or the rate-limit service) could not answer and the route says
    /// `on_store_error: closed`.
    Unavailable(LimitStore),
    /// The client's quota of rows or bytes is spent.
    Quota(QuotaSpent),
}

/// A spent quota: its settings and when it has room again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaSpent {
    /// Its rows or bytes per window.
    pub amount: u64,
    /// What it counts.
    pub unit: crate::limit::config::QuotaUnit,
    /// Its window, in whole seconds.
    pub per_secs: u32,
    /// Whole seconds until it has room again (at least 1).
    pub retry_after: u64,
}

/// A rate's refusal, in words: whose rate, what it allows, when to come back.
fn write_rate(f: &mut std::fmt::Formatter<'_>, r: &Refused) -> std::fmt::Result {
    let who = match r.which {
        Which::PerClient => "too many requests from this client: this route allows",
        Which::PerAddress => {
            "too many requests from this address, whatever key it sends: this route allows"
        }
        Which::Total => "too many requests to this route from all clients: it allows",
        Which::Service => "too many requests: the rate-limit service allows",
        Which::ServiceUnstated => {
            return write!(
                f,
                "too many requests: the rate-limit service refused this one; retry in {} s",
                r.retry_after
            );
        }
    };
    write!(
        f,
        "{who} {} per {}; retry in {} s",
        r.rate.requests,
        humantime::format_duration(r.rate.per),
        r.retry_after
    )
}

impl std::fmt::Display for LimitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.refusal {
            Refusal::Rate(r) => write_rate(f, &r),
            Refusal::Concurrency(NoSlot::Full(full)) => match full {
                Full::PerClient(n) => write!(
                    f,
                    "this client already has {n} {} in flight on this route, its limit: wait for {} to finish",
                    if n == 1 { "request" } else { "requests" },
                    if n == 1 { "it" } else { "one" }
                ),
                Full::Total(n) => write!(
                    f,
                    "this route already has {n} {} in flight, its limit: retry later",
                    if n == 1 { "request" } else { "requests" }
                ),
            },
            Refusal::Concurrency(NoSlot::Waited(full, waited)) => write!(
                f,
                "no free slot within {} ({} of {} in flight)",
                humantime::format_duration(waited),
                match full {
                    Full::PerClient(_) => "this client's limit",
                    Full::Total(_) => "this route's limit",
                },
                match full {
                    Full::PerClient(n) | Full::Total(n) => n,
                }
            ),
            Refusal::Quota(q) => {
                let unit = match q.unit {
                    crate::limit::config::QuotaUnit::Rows => "rows",
                    crate::limit::config::QuotaUnit::Bytes => "bytes",
                };
                write!(
                    f,
                    "this client has used its quota of {} {unit} per {} on this route; retry in {} s",
                    q.amount,
                    humantime::format_duration(std::time::Duration::from_secs(q.per_secs.into())),
                    q.retry_after
                )
            }
            Refusal::Unavailable(store) => write!(
                f,
                "this route's limits are kept in {}, which cannot answer now: retry shortly",
                match store {
                    LimitStore::EnvoyRls => "a rate-limit service",
                    LimitStore::Redis => "Redis",
                    LimitStore::Local => "a shared store",
                }
            ),
        }
    }
}

impl std::error::Error for LimitError {}

impl LimitError {
    /// Whether the route's total in flight refused it (503: the route is busy), rather than the
    /// client's own limits or a rate (429).
    pub fn route_busy(&self) -> bool {
        matches!(
            self.refusal,
            Refusal::Concurrency(NoSlot::Full(Full::Total(_)) | NoSlot::Waited(Full::Total(_), _))
                | Refusal::Unavailable(_)
        )
    }

    /// `Retry-After`, in seconds.
    pub fn retry_after(&self) -> u64 {
        match self.refusal {
            Refusal::Rate(r) => r.retry_after,
            Refusal::Concurrency(_) => CONCURRENCY_RETRY_AFTER,
            Refusal::Unavailable(_) => 1,
            Refusal::Quota(q) => q.retry_after,
        }
    }

    /// The metric and report name of the limit.
    pub fn limit(&self) -> &'static str {
        match self.refusal {
            Refusal::Rate(r) => match r.which {
                Which::PerClient => "rate_per_client",
                Which::PerAddress => "rate_per_address",
                Which::Total => "rate_total",
                Which::Service | Which::ServiceUnstated => "rate_service",
            },
            Refusal::Concurrency(NoSlot::Full(full) | NoSlot::Waited(full, _)) => match full {
                Full::PerClient(_) => "concurrency_per_client",
                Full::Total(_) => "concurrency_total",
            },
            Refusal::Unavailable(store) => store_label(store),
            Refusal::Quota(_) => "quota",
        }
    }
}

/// The metric label of a store that could not answer (`limit="redis"`).
pub(crate) fn store_label(store: LimitStore) -> &'static str {
    match store {
        LimitStore::EnvoyRls => "rate_limit_service",
        LimitStore::Redis | LimitStore::Local => "redis",
    }
}
