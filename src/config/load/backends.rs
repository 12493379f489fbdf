//! The backends (`upstreams`, `postgres`) and the `default` route that may pass to one.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use http::{HeaderValue, Uri};
use serde_saphyr::Spanned;

use super::values::Problems;
use crate::config::defaults::*;
use crate::config::file::*;
use crate::config::load::{Databases, Upstreams};
use crate::config::*;

/// The backends: HTTP upstreams and PostgreSQL databases, by name.
pub(super) fn backends(p: &mut Problems, file: &FileConfig) -> (Upstreams, Databases) {
    let no_upstreams = BTreeMap::new();
    let declared = file.upstreams.as_ref().map_or(&no_upstreams, |u| &u.value);
    match &file.upstreams {
        Some(u) if u.value.is_empty() && file.postgres.is_empty() => p.invalid(
            u,
            "upstreams",
            "is empty: declare at least one, e.g. `app: {url: http://127.0.0.1:3000}`"
                .to_owned(),
        ),
        None if file.postgres.is_empty() => p.missing(
            "upstreams",
            "is missing: declare at least one backend, e.g. `upstreams: {app: {url: http://127.0.0.1:3000}}`, or a `postgres` database".to_owned(),
        ),
        _ => {}
    }
    let upstreams: BTreeMap<String, Arc<UpstreamConfig>> = declared
        .iter()
        .filter_map(|(name, u)| upstream(p, name, u).map(|u| (name.clone(), Arc::new(u))))
        .collect();
    let postgres: BTreeMap<String, Arc<PostgresConfig>> = file
        .postgres
        .iter()
        .map(|(name, at)| {
            if !super::table::plain_name(name) {
                p.invalid(
                    at,
                    "postgres",
                    format!("names a database {name:?}: use letters, digits and _"),
                );
            }
            (name.clone(), Arc::new(super::postgres::postgres(p, at)))
        })
        .collect();

    (upstreams, postgres)
}

/// The names of the declared upstreams, for messages.
pub(super) fn known_upstreams(file: &FileConfig) -> String {
    file.upstreams
        .as_ref()
        .map(|u| u.value.keys().cloned().collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

/// What serves a request no route matches.
pub(super) fn default_policy(
    p: &mut Problems,
    file: &FileConfig,
    upstreams: &Upstreams,
) -> DefaultPolicy {
    let declared = |name: &str| {
        file.upstreams
            .as_ref()
            .is_some_and(|u| u.value.contains_key(name))
    };
    let known = known_upstreams(file);
    match &file.default {
        None => DefaultPolicy::Deny,
        Some(d) => {
            match (d.value.action.value, &d.value.upstream) {
                (FileDefaultAction::Deny, None) => DefaultPolicy::Deny,
                (FileDefaultAction::Deny, Some(u)) => {
                    p.invalid(
                        u,
                        "default.upstream",
                        "is only read with `action: pass`: remove it".to_owned(),
                    );
                    DefaultPolicy::Deny
                }
                (FileDefaultAction::Pass, None) => {
                    p.invalid(
                        &d.value.action,
                        "default.action",
                        "is `pass` but no `upstream` is named: add `upstream: NAME`".to_owned(),
                    );
                    DefaultPolicy::Deny
                }
                (FileDefaultAction::Pass, Some(u)) => {
                    if !declared(&u.value) {
                        p.invalid(
                        u,
                        "default.upstream",
                        format!("is `{}`, which is not declared under `upstreams`; declared: {known}", u.value),
                    );
                    }
                    // An upstream missing here was reported, as undeclared or where it is
                    // written; the config is refused either way.
                    upstreams
                        .get(&u.value)
                        .map_or(DefaultPolicy::Deny, |u| DefaultPolicy::Pass(Arc::clone(u)))
                }
            }
        }
    }
}

/// One entry of `upstreams`: its origin, base path, `Host` and timeouts.
pub(super) fn upstream(
    p: &mut Problems,
    name: &str,
    u: &Spanned<FileUpstream>,
) -> Option<UpstreamConfig> {
    let f = &u.value;
    let uri = url(p, f)?;
    let tls = super::tls::upstream(p, &uri, f.tls.as_ref());
    let origin = Uri::builder()
        .scheme(uri.scheme()?.clone())
        .authority(uri.authority()?.clone())
        .path_and_query("/")
        .build()
        .ok()?;
    let host = host(p, f);
    let pool_max_idle = f.pool_max_idle.as_ref().map_or(DEFAULT_POOL_MAX_IDLE, |n| {
        usize::try_from(n.value.0).unwrap_or(usize::MAX)
    });
    Some(UpstreamConfig {
        name: name.to_owned(),
        origin,
        base_path: uri.path().trim_end_matches('/').to_owned(),
        host,
        http2: f.http2.unwrap_or(false),
        rewrite_redirects: f.rewrite_redirects.unwrap_or(DEFAULT_REWRITE_REDIRECTS),
        format_suffixes: f.format_suffixes.unwrap_or(DEFAULT_FORMAT_SUFFIXES),
        connect_timeout: p.duration(
            f.connect_timeout.as_ref(),
            "connect_timeout",
            DEFAULT_CONNECT_TIMEOUT,
        ),
        response_timeout: p.duration(
            f.response_timeout.as_ref(),
            "response_timeout",
            DEFAULT_RESPONSE_TIMEOUT,
        ),
        idle_timeout: p.duration(
            f.idle_timeout.as_ref(),
            "idle_timeout",
            DEFAULT_IDLE_TIMEOUT,
        ),
        pool_idle_timeout: p.duration(
            f.pool_idle_timeout.as_ref(),
            "pool_idle_timeout",
            DEFAULT_POOL_IDLE_TIMEOUT,
        ),
        pool_max_idle,
        tls,
    })
}

/// `url`: `http://HOST:PORT[/prefix]` or `https://…`, no query.
fn url(p: &mut Problems, f: &FileUpstream) -> Option<Uri> {
    let shown = crate::config::redact::without_password(f.url.value.trim());
    let uri = match Uri::from_str(f.url.value.trim()) {
        Ok(uri) => uri,
        Err(e) => {
            p.invalid(
                &f.url,
                "url",
                format!(
                    "is {shown:?}, which is not a URL ({e}): write http://HOST:PORT or https://HOST:PORT"
                ),
            );
            return None;
        }
    };
    // `user:password@` is not sent as `Authorization`: it would go out as part of `Host`.
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        p.invalid(
            &f.url,
            "url",
            format!(
                "is {shown:?}: credentials in an upstream's URL are never sent (they would reach \
                 the backend inside Host); remove `user:password@` and let the client send \
                 Authorization"
            ),
        );
        return None;
    }
    let scheme = uri.scheme_str();
    if !matches!(scheme, Some("http" | "https"))
        || uri.authority().is_none()
        || uri.query().is_some()
    {
        p.invalid(
            &f.url,
            "url",
            format!(
                "is {shown:?}: write http://HOST:PORT[/prefix] or https://HOST:PORT[/prefix] (no query)"
            ),
        );
        return None;
    }
    Some(uri)
}

/// `host`: the upstream's own, the client's, or a fixed name.
fn host(p: &mut Problems, f: &FileUpstream) -> HostMode {
    match f.host.as_ref().map(|h| h.value.as_str()) {
        None | Some("upstream") => HostMode::Upstream,
        Some("preserve") => HostMode::Preserve,
        Some(other) => match HeaderValue::from_str(other) {
            Ok(v) if !other.is_empty() => HostMode::Fixed(v),
            _ => {
                if let Some(h) = &f.host {
                    p.invalid(
                        h,
                        "host",
                        format!("is {other:?}: write `upstream`, `preserve` or a host name"),
                    );
                }
                HostMode::Upstream
            }
        },
    }
}
