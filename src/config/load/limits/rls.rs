//! `store: envoy_rls`: the top-level `rate_limit_service` → [`RlsConfig`], a route's
//! `descriptors` → [`DescriptorEntry`]s, and `on_store_error` (with its old name
//! `on_redis_error`), every problem located.

use std::num::NonZeroU32;
use std::time::Duration;

use http::HeaderName;
use serde_saphyr::Spanned;

use super::super::Problems;
use crate::config::defaults::{DEFAULT_COST_EVERY, DEFAULT_RLS_TIMEOUT};
use crate::config::file::{FileCostUnit, FileLimits, FileOnRedisError, FileRateLimitService};
use crate::config::{ClientKeySource, DescriptorEntry, DescriptorValue, LimitStore, OnRedisError};
use crate::config::{RlsConfig, redact::without_password};
use crate::limit::config::{Cost, QuotaUnit};

/// Most entries one route's descriptor has.
const MAX_ENTRIES: usize = 16;

/// Largest `cost.request`.
const MAX_REQUEST_COST: u64 = 1_000_000;

/// Shortest `cost.every`: a call per answer at most ten times a second.
const MIN_COST_EVERY: Duration = Duration::from_millis(100);
/// Longest `cost.every`: at least one call an hour while an answer streams.
const MAX_COST_EVERY: Duration = Duration::from_secs(3600);

/// The top-level `rate_limit_service`.
pub(in crate::config::load) fn service(
    p: &mut Problems,
    at: &Spanned<FileRateLimitService>,
) -> RlsConfig {
    let s = &at.value;
    let address = s.address.value.trim().trim_end_matches('/').to_owned();
    let tls = match address.parse::<http::Uri>() {
        Ok(uri)
            if matches!(uri.scheme_str(), Some("http" | "https"))
                && uri.authority().is_some()
                && uri.path() == "/"
                && !address.contains('@') =>
        {
            super::super::tls::upstream(p, &uri, s.tls.as_ref())
        }
        _ => {
            p.invalid(
                &s.address,
                "address",
                format!(
                    "{:?} is not http://HOST:PORT or https://HOST:PORT (the gRPC address of the service, nothing after the port)",
                    without_password(&address)
                ),
            );
            None
        }
    };
    let domain = s.domain.value.trim().to_owned();
    if domain.is_empty() || domain.len() > 256 {
        p.invalid(
            &s.domain,
            "domain",
            "name the domain of the service's config that holds this fleet's limits (1 to 256 characters)".to_owned(),
        );
    }
    let timeout = p.duration(s.timeout.as_ref(), "timeout", DEFAULT_RLS_TIMEOUT);
    if let Some(at) = &s.timeout
        && timeout > Duration::from_secs(10)
    {
        p.invalid(
            at,
            "timeout",
            "is over 10s: a request would wait that long for its limit; keep it to tens of milliseconds".to_owned(),
        );
    }
    RlsConfig {
        address,
        tls,
        domain,
        timeout,
    }
}

/// `on_store_error`, or its old name `on_redis_error` (one of the two).
pub(super) fn on_error(p: &mut Problems, l: &FileLimits) -> OnRedisError {
    let chosen = match (&l.on_store_error, &l.on_redis_error) {
        (Some(new), Some(_)) => {
            p.invalid(
                new,
                "on_store_error",
                "is set with on_redis_error, its old name: keep on_store_error only".to_owned(),
            );
            Some(new.value)
        }
        (Some(one), None) | (None, Some(one)) => Some(one.value),
        (None, None) => None,
    };
    match chosen {
        None | Some(FileOnRedisError::Open) => OnRedisError::Open,
        Some(FileOnRedisError::Closed) => OnRedisError::Closed,
    }
}

/// A route's `descriptors` (with `store: envoy_rls` only); by default the route's name and
/// the client's key, `[{key: route}, {key: client}]`.
pub(super) fn descriptors(
    p: &mut Problems,
    l: &FileLimits,
    store: LimitStore,
    key: &ClientKeySource,
) -> Vec<DescriptorEntry> {
    let Some(at) = &l.descriptors else {
        if store != LimitStore::EnvoyRls {
            return Vec::new();
        }
        let entry = |key: &str, value| DescriptorEntry {
            key: key.to_owned(),
            value,
        };
        return vec![
            entry("route", DescriptorValue::Route),
            entry("client", DescriptorValue::Key),
        ];
    };
    if store != LimitStore::EnvoyRls {
        p.invalid(
            at,
            "descriptors",
            "are sent to a rate-limit service: add `store: envoy_rls`, or remove them".to_owned(),
        );
        return Vec::new();
    }
    if at.value.is_empty() || at.value.len() > MAX_ENTRIES {
        p.invalid(
            at,
            "descriptors",
            format!("list 1 to {MAX_ENTRIES} entries, as the service's config matches them"),
        );
    }
    at.value.iter().filter_map(|e| entry(p, e, key)).collect()
}

/// One descriptor entry: its key and where its value comes from.
fn entry(
    p: &mut Problems,
    at: &Spanned<crate::config::file::FileDescriptorEntry>,
    limits_key: &ClientKeySource,
) -> Option<DescriptorEntry> {
    let key = at.value.key.value.trim().to_owned();
    if key.is_empty() || key.len() > 128 {
        p.invalid(
            &at.value.key,
            "key",
            "name the entry as the service's config does (1 to 128 characters)".to_owned(),
        );
        return None;
    }
    let value = match &at.value.value {
        None if key == "route" => DescriptorValue::Route,
        None if key == "client" => DescriptorValue::Key,
        None => {
            p.invalid(at, "value", format!("is missing: say where {key:?}'s value comes from: route, key, claim:NAME, header:NAME or literal:TEXT"));
            return None;
        }
        Some(v) => value(p, v, limits_key)?,
    };
    Some(DescriptorEntry { key, value })
}

/// A route's `cost` (with `store: envoy_rls` only): the request's `hits_addend` (1 by
/// default), what its answer adds as it streams, and how often that is sent (`every`).
pub(super) fn cost(p: &mut Problems, l: &FileLimits, store: LimitStore) -> Cost {
    let Some(at) = &l.cost else {
        return Cost::default();
    };
    if store != LimitStore::EnvoyRls {
        p.invalid(at, "cost", "is charged to a rate-limit service (its hits_addend): add `store: envoy_rls`; for a budget of rows or bytes kept here or in Redis, set `quota`".to_owned());
        return Cost::default();
    }
    let request = at.value.request.as_ref().and_then(|n| {
        p.whole(
            n,
            "request",
            1..=MAX_REQUEST_COST,
            &format!(
                "write what one request adds to the service's counters, 1 to {MAX_REQUEST_COST}"
            ),
        )
    });
    let response = at.value.response.as_ref().map(|u| match u.value {
        FileCostUnit::Rows => QuotaUnit::Rows,
        FileCostUnit::Bytes => QuotaUnit::Bytes,
    });
    let every = p.duration(at.value.every.as_ref(), "every", DEFAULT_COST_EVERY);
    if let Some(at) = &at.value.every
        && !(MIN_COST_EVERY..=MAX_COST_EVERY).contains(&every)
    {
        p.invalid(
            at,
            "every",
            "write how often a streaming answer sends what it owes so far, between 100ms and 1h"
                .to_owned(),
        );
    }
    if let (Some(at), None) = (&at.value.every, response) {
        p.invalid(
            at,
            "every",
            "paces the charges of `response`, which is not set: add `response: bytes` or `rows`, or remove `every`".to_owned(),
        );
    }
    Cost {
        every: every.clamp(MIN_COST_EVERY, MAX_COST_EVERY),
        request: request
            .and_then(|n| u32::try_from(n).ok())
            .and_then(NonZeroU32::new)
            .unwrap_or(NonZeroU32::MIN),
        response,
    }
}

/// `route`, `key`, `claim:C`, `header:H` or `literal:TEXT`.
fn value(
    p: &mut Problems,
    at: &Spanned<String>,
    limits_key: &ClientKeySource,
) -> Option<DescriptorValue> {
    let text = at.value.trim();
    let fix = "write route, key, claim:NAME, header:NAME or literal:TEXT";
    // `claim: sub` as YAML writes it in a flow list: the name is `sub`.
    let value = match text
        .split_once(':')
        .map(|(k, v)| (k.trim_end(), v.trim_start()))
    {
        None if text == "route" => DescriptorValue::Route,
        None if text == "key" => DescriptorValue::Key,
        Some(("claim", claim)) if !claim.is_empty() => {
            if !matches!(limits_key, ClientKeySource::Claim(_)) {
                p.invalid(at, "value", "reads a claim of the route's verified token, and this route's key is not one: set `key: {jwt: NAME, claim: …}`".to_owned());
                return None;
            }
            DescriptorValue::Claim(claim.to_owned())
        }
        Some(("header", name)) => match HeaderName::from_bytes(name.as_bytes()) {
            Ok(name)
                if [
                    http::header::AUTHORIZATION,
                    http::header::PROXY_AUTHORIZATION,
                    http::header::COOKIE,
                ]
                .contains(&name) =>
            {
                p.invalid(at, "value", format!("would send the client's {name} credential to the rate-limit service in the clear: key by a verified claim instead (claim:NAME with `key: {{jwt: …}}`)"));
                return None;
            }
            Ok(name) => {
                p.underscored(at, "value", name.as_str());
                DescriptorValue::Header(name)
            }
            Err(_) => {
                p.invalid(at, "value", format!("{name:?} is not a header name: {fix}"));
                return None;
            }
        },
        Some(("literal", text)) if !text.is_empty() => DescriptorValue::Literal(text.to_owned()),
        _ => {
            p.invalid(
                at,
                "value",
                format!("{text:?} is not a value source: {fix}"),
            );
            return None;
        }
    };
    Some(value)
}
