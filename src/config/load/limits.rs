//! `routes[].limits` and `default.limits` → [`LimitsConfig`], every problem located.

use std::num::NonZeroU32;
use std::time::Duration;

use serde_saphyr::Spanned;

use super::Problems;
use super::identities::Identities;
use crate::config::defaults::{
    DEFAULT_LIMIT_MAX_CLIENTS, DEFAULT_PER_ADDRESS_FACTOR, DEFAULT_QUEUE_TIMEOUT,
};
use crate::config::file::{
    FileConcurrency, FileKeySpec, FileLimitKey, FileLimitStore, FileLimits, FileRate, Whole,
};
use crate::config::{ClientKeySource, LimitStore, LimitsConfig, Queue, Rate};

/// A whole number from 1 to `u32::MAX`, or a located problem.
fn count(
    p: &mut Problems,
    value: &Spanned<Whole>,
    key: &'static str,
    what: &str,
) -> Option<NonZeroU32> {
    let fix = format!("{what} is a whole number from 1 to 4294967295");
    p.whole(value, key, 1..=u64::from(u32::MAX), &fix)
        .and_then(|n| u32::try_from(n).ok())
        .and_then(NonZeroU32::new)
}

mod pace;
mod quota;
mod redis;
mod rls;
mod tenants;

pub(super) use redis::redis;
pub(super) use rls::service as rate_limit_service;

/// Which shared stores the file configures (top-level `redis`, `rate_limit_service`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stores {
    pub(crate) redis: bool,
    pub(crate) rls: bool,
}

/// A route's (or the default's) `limits`: its key, rates, concurrency and store.
pub(super) fn limits(
    p: &mut Problems,
    at: &Spanned<FileLimits>,
    (stores, identities): (Stores, &Identities),
) -> LimitsConfig {
    let l = &at.value;
    let store = match &l.store {
        None => LimitStore::Local,
        Some(s) => match s.value {
            FileLimitStore::Local => LimitStore::Local,
            FileLimitStore::Redis => {
                if !stores.redis {
                    p.invalid(s, "store", "is `redis`, but no top-level `redis` is configured: add `redis: {url: redis://HOST:6379}`".to_owned());
                }
                LimitStore::Redis
            }
            FileLimitStore::EnvoyRls => {
                if !stores.rls {
                    p.invalid(s, "store", "is `envoy_rls`, but no top-level `rate_limit_service` is configured: add `rate_limit_service: {address: http://HOST:8081, domain: NAME}`".to_owned());
                }
                LimitStore::EnvoyRls
            }
        },
    };
    let key = key(p, l, identities);
    let descriptors = rls::descriptors(p, l, store, &key);
    let cost = rls::cost(p, l, store);
    let (overrides, exempt) = tenants::tenants(p, l, &key);
    let (rate_per_client, rate_per_address, rate_total) = rates(p, l, &key);
    let (concurrency_per_client, concurrency_total, queue) = match &l.concurrency {
        Some(c) => concurrency(p, c),
        None => (None, None, None),
    };
    // With `envoy_rls` the service holds the limits.
    if l.rate.is_none()
        && l.concurrency.is_none()
        && l.pace.is_none()
        && l.quota.is_none()
        && store != LimitStore::EnvoyRls
    {
        p.invalid(
            at,
            "limits",
            "sets no limit: add `rate`, `concurrency`, `pace` or `quota`, or remove `limits`"
                .to_owned(),
        );
    }
    let max_clients = p.count(
        l.max_clients.as_ref(),
        "max_clients",
        1_000..=100_000_000,
        "keep between 1000 and 100000000 clients (each costs about 64 bytes)",
        DEFAULT_LIMIT_MAX_CLIENTS,
    );
    let batch = batch(p, l, store);
    LimitsConfig {
        batch,
        key,
        rate_per_client,
        rate_per_address,
        rate_total,
        concurrency_per_client,
        concurrency_total,
        queue,
        report_only: l.report_only.unwrap_or(false),
        max_clients,
        store,
        on_redis_error: rls::on_error(p, l),
        descriptors,
        cost,
        pace: l.pace.as_ref().map(|at| pace::pace(p, at)),
        overrides,
        exempt,
        quota: l.quota.as_ref().and_then(|at| quota::quota(p, at)),
    }
}

/// `batch`: shared rates counted here and flushed to Redis every this long.
fn batch(p: &mut Problems, l: &FileLimits, store: LimitStore) -> Option<Duration> {
    let at = l.batch.as_ref()?;
    // The fallback is returned only with a problem noted.
    let every = p.duration(Some(at), "batch", Duration::from_millis(50));
    if store != LimitStore::Redis {
        p.invalid(
            at,
            "batch",
            "applies to rates shared through Redis: add `store: redis`, or remove `batch`"
                .to_owned(),
        );
    } else if l.rate.is_none() {
        p.invalid(at, "batch", "batches rates, and this route has none: add a `rate`, or remove `batch` (concurrency slots are always exact)".to_owned());
    } else if !(Duration::from_millis(10)..=Duration::from_secs(1)).contains(&every) {
        p.invalid(at, "batch", "keep between 10ms and 1s: the longer, the more the replicas may let on together before they hear of each other".to_owned());
    }
    Some(every)
}

/// `rate`: per client, per address (with `key: header_and_client`) and in total.
fn rates(
    p: &mut Problems,
    l: &FileLimits,
    key: &ClientKeySource,
) -> (Option<Rate>, Option<Rate>, Option<Rate>) {
    let rates = l.rate.as_ref().map(|r| &r.value);
    let rate_per_client = rates
        .and_then(|r| r.per_client.as_ref())
        .and_then(|r| rate(p, r));
    let rate_total = rates
        .and_then(|r| r.total.as_ref())
        .and_then(|r| rate(p, r));
    let per_address = rates.and_then(|r| r.per_address.as_ref());
    let rate_per_address = match (key, per_address) {
        (ClientKeySource::HeaderAndClient(_), Some(at)) => rate(p, at),
        (ClientKeySource::HeaderAndClient(_), None) => rate_per_client.map(|r| Rate {
            requests: r.requests.saturating_mul(DEFAULT_PER_ADDRESS_FACTOR),
            per: r.per,
            burst: r.burst.saturating_mul(DEFAULT_PER_ADDRESS_FACTOR),
        }),
        (_, Some(at)) => {
            p.invalid(at, "per_address", "applies only with `key: header_and_client` (one address sending many header values): remove it, or set that key".to_owned());
            None
        }
        (_, None) => None,
    };
    if let Some(r) = &l.rate
        && r.value.per_client.is_none()
        && r.value.total.is_none()
    {
        p.invalid(
            r,
            "rate",
            "sets no rate: add `per_client` or `total`, e.g. `per_client: {requests: 5, per: 1m}`"
                .to_owned(),
        );
    }
    (rate_per_client, rate_per_address, rate_total)
}

fn key(p: &mut Problems, l: &FileLimits, identities: &Identities) -> ClientKeySource {
    let kind = match l.key.as_ref().map(|k| &k.value) {
        None => FileLimitKey::Client,
        Some(FileKeySpec::Named(kind)) => *kind,
        Some(FileKeySpec::Claim(claim)) => {
            if let Some(h) = &l.key_header {
                p.invalid(
                    h,
                    "key_header",
                    "is not read with a `jwt` key: remove it".to_owned(),
                );
            }
            let key = identities.claim_key(p, claim);
            return key.map_or(ClientKeySource::Client, ClientKeySource::Claim);
        }
    };
    let header = l
        .key_header
        .as_ref()
        .and_then(|h| p.header_name(h, "key_header", "X-Api-Key"));
    match (kind, header, &l.key_header) {
        (FileLimitKey::Client, _, None) => ClientKeySource::Client,
        (FileLimitKey::Client, _, Some(h)) => {
            p.invalid(
                h,
                "key_header",
                "is only read with `key: header` or `key: header_and_client`: set one or remove it"
                    .to_owned(),
            );
            ClientKeySource::Client
        }
        (FileLimitKey::Header, Some(h), _) => ClientKeySource::Header(h),
        (FileLimitKey::HeaderAndClient, Some(h), _) => ClientKeySource::HeaderAndClient(h),
        (_, None, _) => {
            if let Some(k) = &l.key
                && l.key_header.is_none()
            {
                p.invalid(
                    k,
                    "key",
                    "names a header key: add `key_header`, e.g. `key_header: X-Api-Key`".to_owned(),
                );
            }
            ClientKeySource::Client
        }
    }
}

pub(super) fn rate(p: &mut Problems, at: &Spanned<FileRate>) -> Option<Rate> {
    let r = &at.value;
    let requests = count(p, &r.requests, "requests", "a rate's `requests`");
    let per = match humantime::parse_duration(r.per.value.trim()) {
        Ok(d)
            if d >= Duration::from_secs(1)
                && d.subsec_nanos() == 0
                && d <= crate::config::load::values::MAX_DURATION =>
        {
            Some(d)
        }
        _ => {
            p.invalid(&r.per, "per", format!("is {:?}: write a whole number of seconds from 1s to a year, such as 1s, 1m, 1h", r.per.value));
            None
        }
    };
    let burst = match &r.burst {
        Some(b) => count(p, b, "burst", "`burst`"),
        None => requests,
    };
    Some(Rate {
        requests: requests?,
        per: per?,
        burst: burst?,
    })
}

type Concurrency = (Option<NonZeroU32>, Option<NonZeroU32>, Option<Queue>);

fn concurrency(p: &mut Problems, at: &Spanned<FileConcurrency>) -> Concurrency {
    let c = &at.value;
    let per_client = c
        .per_client
        .as_ref()
        .and_then(|n| count(p, n, "per_client", "`per_client`"));
    let total = c
        .total
        .as_ref()
        .and_then(|n| count(p, n, "total", "`total`"));
    if c.per_client.is_none() && c.total.is_none() {
        p.invalid(
            at,
            "concurrency",
            "sets no limit: add `per_client` or `total`".to_owned(),
        );
    }
    if let (Some(one), Some(all), Some(at)) = (per_client, total, &c.per_client)
        && one > all
    {
        p.invalid(
            at,
            "per_client",
            format!("({one}) is above `total` ({all}): lower per_client or raise total"),
        );
    }
    let size = c
        .queue
        .as_ref()
        .and_then(|n| count(p, n, "queue", "`queue`"));
    let timeout = p.duration(
        c.queue_timeout.as_ref(),
        "queue_timeout",
        DEFAULT_QUEUE_TIMEOUT,
    );
    if let (None, Some(t)) = (&c.queue, &c.queue_timeout) {
        p.invalid(
            t,
            "queue_timeout",
            "is only read with `queue`: set `queue` (how many may wait) or remove it".to_owned(),
        );
    }
    (per_client, total, size.map(|size| Queue { size, timeout }))
}
