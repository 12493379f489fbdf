//! Tenant classes (`overrides`, `exempt`): which class a request is in, and each class's
//! per-client limits. Class 0 is `default` (the route's own `rate.per_client` and
//! `concurrency.per_client`); class `i + 1` is override `i`, whose limits replace those for its
//! clients while the route's totals still apply; an exempt request meets no rate or
//! concurrency limit. Metrics name a class (`tenant_class`), never a key.

use std::num::NonZeroU32;
use std::sync::Arc;

use crate::identity::Verified;
use crate::limit::config::{LimitsConfig, Rate, TenantMatch};

/// The `tenant_class` of requests no override matches.
pub(crate) const DEFAULT_CLASS: &str = "default";
/// The `tenant_class` of exempt requests.
pub(crate) const EXEMPT_CLASS: &str = "exempt";

/// A request's class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// No rate or concurrency limit applies.
    Exempt,
    /// Limited as class `n` (0: the default).
    Limited(u8),
}

/// One class's per-client limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tier {
    /// Its `tenant_class` label.
    pub(crate) name: Arc<str>,
    /// Its own rate (the default class's: the route's `per_client`); none: the default's,
    /// from the default's buckets, so a client that changes class gains nothing.
    pub(crate) rate: Option<Rate>,
    /// Its clients' requests in flight (counted per key whatever the class).
    pub(crate) concurrency: Option<u32>,
}

/// Every class of a route, the default first.
pub(crate) fn tiers(config: &LimitsConfig) -> Vec<Tier> {
    let default = Tier {
        name: Arc::from(DEFAULT_CLASS),
        rate: config.rate_per_client,
        concurrency: config.concurrency_per_client.map(NonZeroU32::get),
    };
    let overrides = config.overrides.iter().map(|o| Tier {
        name: Arc::from(o.name.as_str()),
        rate: o.rate,
        concurrency: o
            .concurrency
            .or(config.concurrency_per_client)
            .map(NonZeroU32::get),
    });
    std::iter::once(default).chain(overrides).collect()
}

/// The class of a request: exempt first, then the first override that matches.
pub(crate) fn classify(
    config: &LimitsConfig,
    headers: &http::HeaderMap,
    verified: Option<&Verified>,
) -> Class {
    if config.exempt.iter().any(|m| m.matches(headers, verified)) {
        return Class::Exempt;
    }
    let found = config
        .overrides
        .iter()
        .position(|o| o.matches.matches(headers, verified));
    // Validation bounds overrides to fewer than 255.
    Class::Limited(found.map_or(0, |i| u8::try_from(i + 1).unwrap_or(0)))
}

impl TenantMatch {
    /// Whether the request carries the value: the verified claim's, or the header's one value
    /// (a repeated header matches nothing: which one would the auth layer have set?).
    fn matches(&self, headers: &http::HeaderMap, verified: Option<&Verified>) -> bool {
        match self {
            Self::Claim { claim, value } => verified
                .and_then(|v| v.claim(claim))
                .is_some_and(|found| found == value.as_str()),
            Self::Header { header, value } => crate::client_addr::single_header(headers, header)
                .is_some_and(|found| found.as_bytes() == value.as_bytes()),
        }
    }
}
