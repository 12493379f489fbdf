//! The top-level `redis` block → [`RedisConfig`]: one server, a cluster's seeds or
//! Sentinels, its TLS, timeout, key prefix and lease life, every problem located.

use std::time::Duration;

use serde_saphyr::Spanned;

use super::super::Problems;
use crate::config::defaults::{DEFAULT_LEASE_TTL, DEFAULT_REDIS_KEY_PREFIX, DEFAULT_REDIS_TIMEOUT};
use crate::config::file::FileRedis;
use crate::config::redact::without_password;
use crate::config::{RedisConfig, RedisTopology};
/// A `redis://` URL, trimmed, or a located problem.
fn redis_url(p: &mut Problems, url: &Spanned<String>, key: &'static str) -> String {
    let text = url.value.trim();
    let scheme = text.starts_with("redis://") || text.starts_with("rediss://");
    if text.contains('#') {
        // `#insecure` would turn certificate checks off: never here.
        p.invalid(
            url,
            key,
            format!("is {:?}: remove the #fragment (certificates are always verified; name the CA in redis.tls.ca_file)", without_password(text)),
        );
    } else if !scheme || redis::Client::open(text).is_err() {
        p.invalid(
            url,
            key,
            format!(
                "is {:?}: write redis://[user:password@]HOST:PORT[/DB] (rediss:// for TLS)",
                without_password(text)
            ),
        );
    }
    text.to_owned()
}

/// A non-empty list of `redis://` URLs, or a located problem.
fn redis_urls(
    p: &mut Problems,
    urls: &Spanned<Vec<Spanned<String>>>,
    key: &'static str,
) -> Vec<String> {
    if urls.value.is_empty() {
        p.invalid(
            urls,
            key,
            "is empty: list at least one redis://HOST:PORT".to_owned(),
        );
    }
    urls.value
        .iter()
        .map(|url| redis_url(p, url, key))
        .collect()
}

/// Where Redis is: exactly one of `url`, `cluster` and `sentinel`.
fn topology(p: &mut Problems, at: &Spanned<FileRedis>) -> RedisTopology {
    let r = &at.value;
    match (&r.url, &r.cluster, &r.sentinel) {
        (Some(url), None, None) => RedisTopology::Single(redis_url(p, url, "url")),
        (None, Some(nodes), None) => RedisTopology::Cluster(redis_urls(p, nodes, "cluster")),
        (None, None, Some(sentinel)) => {
            let master = sentinel.value.master.value.trim();
            if master.is_empty() {
                p.invalid(
                    &sentinel.value.master,
                    "master",
                    "is empty: write the name the Sentinels monitor the master by (`sentinel monitor NAME …`)".to_owned(),
                );
            }
            RedisTopology::Sentinel {
                master: master.to_owned(),
                urls: redis_urls(p, &sentinel.value.urls, "urls"),
            }
        }
        _ => {
            p.invalid(
                at,
                "redis",
                "needs exactly one of `url` (one server), `cluster` (seed nodes of a Redis Cluster) and `sentinel` ({master, urls})".to_owned(),
            );
            RedisTopology::Single(String::new())
        }
    }
}

pub(in crate::config::load) fn redis(p: &mut Problems, at: &Spanned<FileRedis>) -> RedisConfig {
    let r = &at.value;
    let topology = topology(p, at);
    let urls = match &topology {
        RedisTopology::Single(url) => std::slice::from_ref(url),
        RedisTopology::Cluster(urls) | RedisTopology::Sentinel { urls, .. } => urls.as_slice(),
    };
    let tls_urls = urls.iter().filter(|u| u.starts_with("rediss://")).count();
    if tls_urls != 0 && tls_urls != urls.len() {
        p.invalid(
            at,
            "redis",
            "mixes redis:// and rediss:// urls: write all of them with rediss:// (TLS), or none"
                .to_owned(),
        );
    }
    let tls = super::super::tls::redis(p, tls_urls != 0, r.tls.as_ref());
    let key_prefix = r
        .key_prefix
        .as_ref()
        .map_or(DEFAULT_REDIS_KEY_PREFIX.to_owned(), |k| {
            let ok = !k.value.is_empty()
                && k.value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
            if !ok {
                p.invalid(
                    k,
                    "key_prefix",
                    format!("is {:?}: use letters, digits and - _ . :", k.value),
                );
            }
            k.value.clone()
        });
    let lease_ttl = p.duration(r.lease_ttl.as_ref(), "lease_ttl", DEFAULT_LEASE_TTL);
    if let Some(at) = &r.lease_ttl
        && lease_ttl < Duration::from_secs(1)
    {
        p.invalid(
            at,
            "lease_ttl",
            "is below 1s: leases are renewed every third of it; use 1s or more".to_owned(),
        );
    }
    RedisConfig {
        topology,
        tls,
        timeout: p.duration(r.timeout.as_ref(), "timeout", DEFAULT_REDIS_TIMEOUT),
        key_prefix,
        lease_ttl,
    }
}
