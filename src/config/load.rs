//! `FileConfig → Config`: every rule of the configuration, with positions for errors.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Method, Uri};
use serde_saphyr::Spanned;

use super::defaults::*;
use super::file::*;
use super::*;
use crate::cursor::{CursorCodec, CursorKey};
use crate::route_table::{RouteSpec, RouteTable};

mod limits;
mod list;
mod table;
mod values;

use values::Problems;

/// Parses YAML text into a validated config, or every problem found.
pub(super) fn parse(text: &str) -> Result<Config, Vec<Located>> {
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
        strict_booleans: true,
        with_snippet: false,
    };
    let file: FileConfig = serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        let at = e.location().map(Position::from);
        vec![Located {
            at,
            problem: ConfigProblem::Syntax(syntax_message(&e, at.and_then(|at| token(text, at)))),
        }]
    })?;
    Config::try_from(file)
}

/// The parser's message without its own location suffix (the position is printed in front),
/// made plainer where serde's wording is terse.
fn syntax_message(e: &serde_saphyr::Error, found: Option<&str>) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default().trim();
    let message = first.split(" at line ").next().unwrap_or(first).trim();
    let message = message.trim_start_matches("error: ");
    let found = found.unwrap_or("this value");
    if message.starts_with("invalid u64") || message.starts_with("invalid u8") {
        format!(
            "expected a whole number of 0 or more, found `{found}`: write digits only, such as 100"
        )
    } else if message.starts_with("unknown field") {
        format!("{message} (check the spelling; config/reference.yaml lists every key)")
    } else {
        message.to_owned()
    }
}

/// The scalar written at a position, for error messages.
fn token(text: &str, at: Position) -> Option<&str> {
    let line = text
        .lines()
        .nth(usize::try_from(at.line).ok()?.checked_sub(1)?)?;
    let column = usize::try_from(at.column).ok()?.checked_sub(1)?;
    let rest = line.get(column..)?;
    let end = rest.find([',', ']', '}', '#']).unwrap_or(rest.len());
    Some(rest[..end].trim()).filter(|t| !t.is_empty())
}

impl TryFrom<FileConfig> for Config {
    type Error = Vec<Located>;

    fn try_from(file: FileConfig) -> Result<Self, Self::Error> {
        let mut p = Problems::default();
        let listen = match &file.listen {
            Some(l) => p.address(l, "listen"),
            None => SocketAddr::from_str(DEFAULT_LISTEN).ok(),
        };
        let metrics_listen = file
            .metrics_listen
            .as_ref()
            .and_then(|m| p.address(m, "metrics_listen"));
        let shutdown_grace = p.duration(
            file.shutdown_grace.as_ref(),
            "shutdown_grace",
            DEFAULT_SHUTDOWN_GRACE,
        );
        let max_connections = match &file.max_connections {
            Some(m) if m.value == 0 => {
                p.invalid(m, "max_connections", "must be at least 1".to_owned());
                DEFAULT_MAX_CONNECTIONS
            }
            Some(m) => usize::try_from(m.value).unwrap_or(usize::MAX),
            None => DEFAULT_MAX_CONNECTIONS,
        };

        let max_connections_per_client = file.max_connections_per_client.as_ref().and_then(|m| {
            let cap = u32::try_from(m.value)
                .ok()
                .and_then(std::num::NonZeroU32::new);
            if cap.is_none() {
                p.invalid(
                    m,
                    "max_connections_per_client",
                    "must be a whole number from 1 to 4294967295: remove it for no per-client cap"
                        .to_owned(),
                );
            }
            cap
        });
        let header_read_timeout = p.duration(
            file.header_read_timeout.as_ref(),
            "header_read_timeout",
            DEFAULT_HEADER_READ_TIMEOUT,
        );
        if let Some(old) = &file.trust_forwarded {
            p.invalid(
                old,
                "trust_forwarded",
                "was replaced by `trusted_proxies`: list the addresses of the proxies in front of pagegate, e.g. `trusted_proxies: [10.0.0.0/8]`; with none listed, clients' forwarding headers are replaced".to_owned(),
            );
        }
        let mut nets = Vec::new();
        for entry in &file.trusted_proxies {
            let text = entry.value.trim();
            let net = text
                .parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            match net {
                Ok(net) => nets.push(net.trunc()),
                Err(_) => p.invalid(
                    entry,
                    "trusted_proxies",
                    format!("contains {text:?}: write an address or a CIDR range, such as 10.0.0.5 or 10.0.0.0/8"),
                ),
            }
        }
        let trusted_proxies = crate::client_addr::TrustedProxies::new(nets);
        let max_head_bytes = p.size(
            file.max_head_bytes.as_ref(),
            "max_head_bytes",
            DEFAULT_MAX_HEAD_BYTES,
            (8 * 1024, 1024 * 1024),
            " (a head's memory is held per connection: max_connections x max_head_bytes)",
        );
        let send_timeout = p.duration(
            file.send_timeout.as_ref(),
            "send_timeout",
            DEFAULT_SEND_TIMEOUT,
        );
        let http2_keepalive_interval = p.duration(
            file.http2_keepalive_interval.as_ref(),
            "http2_keepalive_interval",
            DEFAULT_HTTP2_KEEPALIVE_INTERVAL,
        );
        let http2_keepalive_timeout = p.duration(
            file.http2_keepalive_timeout.as_ref(),
            "http2_keepalive_timeout",
            DEFAULT_HTTP2_KEEPALIVE_TIMEOUT,
        );
        let http2_idle_timeout = p.duration(
            file.http2_idle_timeout.as_ref(),
            "http2_idle_timeout",
            DEFAULT_HTTP2_IDLE_TIMEOUT,
        );
        let http2_max_resets = match &file.http2_max_resets {
            None => DEFAULT_HTTP2_MAX_RESETS,
            Some(m) => u32::try_from(m.value)
                .ok()
                .and_then(std::num::NonZeroU32::new)
                .unwrap_or_else(|| {
                    p.invalid(
                        m,
                        "http2_max_resets",
                        "must be a whole number from 1 to 4294967295 (streams a client may cancel per connection within 10s)"
                            .to_owned(),
                    );
                    DEFAULT_HTTP2_MAX_RESETS
                }),
        };

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
            .filter_map(|(name, u)| upstream(&mut p, name, u).map(|u| (name.clone(), Arc::new(u))))
            .collect();
        let known = declared.keys().cloned().collect::<Vec<_>>().join(", ");
        let postgres: BTreeMap<String, Arc<PostgresConfig>> = file
            .postgres
            .iter()
            .map(|(name, at)| {
                if !table::plain_name(name) {
                    p.invalid(
                        at,
                        "postgres",
                        format!("names a database {name:?}: use letters, digits and _"),
                    );
                }
                (name.clone(), Arc::new(table::postgres(&mut p, at)))
            })
            .collect();

        let default = match &file.default {
            None => DefaultPolicy::Deny,
            Some(d) => match (d.value.action.value, &d.value.upstream) {
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
                    if !declared.contains_key(&u.value) {
                        p.invalid(
                            u,
                            "default.upstream",
                            format!("is `{}`, which is not declared under `upstreams`; declared: {known}", u.value),
                        );
                    }
                    DefaultPolicy::Pass(u.value.clone())
                }
            },
        };

        let redis = file.redis.as_ref().map(|r| limits::redis(&mut p, r));
        let default_limits = file
            .default
            .as_ref()
            .and_then(|d| d.value.limits.as_ref())
            .map(|l| limits::limits(&mut p, l, redis.is_some()));
        let cursors = file.cursors.as_ref().and_then(|c| cursors(&mut p, c));
        let mut routes = Vec::new();
        let mut names = BTreeMap::new();
        for r in &file.routes {
            let name = r
                .value
                .name
                .as_ref()
                .map_or_else(|| default_name(&r.value), |n| n.value.clone());
            if let Some(previous) = names.insert(name.clone(), r) {
                let at = r.value.name.as_ref().map_or(r.referenced, |n| n.referenced);
                p.0.push(Located {
                    at: Some(at.into()),
                    problem: ConfigProblem::Invalid {
                        key: "name",
                        reason: format!(
                            "`{name}` is already used by the route at line {}: route names must be unique",
                            previous.referenced.line()
                        ),
                    },
                });
            }
            let target = match (&r.value.upstream, &r.value.table) {
                (Some(upstream), None) => {
                    if !declared.contains_key(&upstream.value) {
                        let problem = ConfigProblem::UnknownUpstream {
                            route: name.clone(),
                            name: upstream.value.clone(),
                            known: known.clone(),
                        };
                        p.push(upstream, problem);
                    }
                    Target::Upstream(upstream.value.clone())
                }
                (None, Some(t)) => match table::table(&mut p, t, &postgres) {
                    Some(t) => Target::Table(Arc::new(t)),
                    None => Target::Upstream(String::new()),
                },
                (Some(upstream), Some(_)) => {
                    p.invalid(upstream, "upstream", "and `table` are both set: a route answers from an HTTP upstream or from a table, not both".to_owned());
                    Target::Upstream(upstream.value.clone())
                }
                (None, None) => {
                    p.invalid(
                        &r.value.path,
                        "path",
                        "names a route with neither `upstream` nor `table`: add one".to_owned(),
                    );
                    Target::Upstream(String::new())
                }
            };
            if let (Target::Table(_), Some(list)) = (&target, &r.value.list) {
                p.invalid(list, "list", "is for upstream routes: a table route pages by its `key` (set default_limit and max_limit under `table`)".to_owned());
            }
            routes.push(Arc::new(route(
                &mut p,
                name,
                &r.value,
                target,
                cursors.is_some(),
                redis.is_some(),
            )));
        }
        // The table itself is built with the generation; here it only finds overlaps.
        let specs: Vec<RouteSpec<usize>> = routes
            .iter()
            .enumerate()
            .flat_map(|(i, r)| r.specs(i))
            .collect();
        let table = match RouteTable::new(&specs) {
            Ok(_) => Some(()),
            Err((later, earlier)) => {
                let (later, earlier) = (specs[later].value, specs[earlier].value);
                let problem = ConfigProblem::Overlap {
                    route: routes[later].name.clone(),
                    path: routes[later].path.clone(),
                    other: routes[earlier].name.clone(),
                };
                p.push(&file.routes[later].value.path, problem);
                None
            }
        };

        let max_held_bytes = p.size(
            file.max_held_bytes.as_ref(),
            "max_held_bytes",
            DEFAULT_MAX_HELD_BYTES,
            (1024, u64::MAX),
            "",
        );
        for (route, r) in routes.iter().zip(&file.routes) {
            if let Some(list) = route.list.as_ref().filter(|l| l.max_bytes > max_held_bytes) {
                p.invalid(
                    r,
                    "max_bytes",
                    format!(
                        "of route `{}` ({}) exceeds max_held_bytes ({max_held_bytes}): no page of it could ever be held; raise max_held_bytes or lower max_bytes",
                        route.name, list.max_bytes
                    ),
                );
            }
        }
        // A client's share: at least one page of the largest list route, at most the total.
        let largest_page = routes
            .iter()
            .filter_map(|r| r.list.as_ref().map(|l| l.max_bytes))
            .max()
            .unwrap_or(0);
        let max_held_bytes_per_client = match &file.max_held_bytes_per_client {
            None => DEFAULT_MAX_HELD_BYTES_PER_CLIENT
                .max(largest_page)
                .min(max_held_bytes),
            Some(value) => {
                let share = p.size(
                    Some(value),
                    "max_held_bytes_per_client",
                    0,
                    (1024, u64::MAX),
                    "",
                );
                if share < largest_page || share > max_held_bytes {
                    p.invalid(
                        value,
                        "max_held_bytes_per_client",
                        format!(
                            "is {share} bytes: it must hold one page of the largest list route ({largest_page} bytes, its max_bytes) and be at most max_held_bytes ({max_held_bytes})"
                        ),
                    );
                }
                share
            }
        };

        match (p.0.is_empty(), listen, table) {
            (true, Some(listen), Some(())) => Ok(Config {
                listen,
                metrics_listen,
                shutdown_grace,
                max_connections,
                max_connections_per_client,
                header_read_timeout,
                max_head_bytes,
                send_timeout,
                http2_keepalive_interval,
                http2_keepalive_timeout,
                http2_idle_timeout,
                http2_max_resets,
                max_held_bytes,
                max_held_bytes_per_client,
                default,
                default_limits,
                default_allow_read_body: file
                    .default
                    .as_ref()
                    .and_then(|d| d.value.allow_read_body)
                    .unwrap_or(false),
                redis,
                postgres,
                upstreams,
                routes,
                cursors,
                trusted_proxies,
                access_log: file.access_log.unwrap_or(DEFAULT_ACCESS_LOG),
            }),
            _ => {
                p.0.sort_by_key(|l| l.at.map(|at| (at.line, at.column)));
                Err(p.0)
            }
        }
    }
}

/// A route without `name` is named by its methods and path: `GET /events`.
fn default_name(r: &FileRoute) -> String {
    match &r.methods {
        Some(methods) => {
            let list: Vec<&str> = methods.value.iter().map(|m| m.value.as_str()).collect();
            format!("{} {}", list.join(","), r.path.value)
        }
        None => r.path.value.clone(),
    }
}

fn upstream(p: &mut Problems, name: &str, u: &Spanned<FileUpstream>) -> Option<UpstreamConfig> {
    let f = &u.value;
    let uri = match Uri::from_str(f.url.value.trim()) {
        Ok(uri) => uri,
        Err(e) => {
            p.invalid(
                &f.url,
                "url",
                format!(
                    "is {:?}, which is not a URL ({e}): write http://HOST:PORT",
                    f.url.value
                ),
            );
            return None;
        }
    };
    if uri.scheme_str() != Some("http") || uri.authority().is_none() || uri.query().is_some() {
        p.invalid(
            &f.url,
            "url",
            format!(
                "is {:?}: write http://HOST:PORT[/prefix] (no query; https upstreams are not supported yet, \
                 put pagegate beside a TLS sidecar)",
                f.url.value
            ),
        );
        return None;
    }
    let origin = Uri::builder()
        .scheme("http")
        .authority(uri.authority()?.clone())
        .path_and_query("/")
        .build()
        .ok()?;
    let host = match f.host.as_ref().map(|h| h.value.as_str()) {
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
    };
    let pool_max_idle = f.pool_max_idle.as_ref().map_or(DEFAULT_POOL_MAX_IDLE, |n| {
        usize::try_from(n.value).unwrap_or(usize::MAX)
    });
    Some(UpstreamConfig {
        name: name.to_owned(),
        origin,
        base_path: uri.path().trim_end_matches('/').to_owned(),
        host,
        http2: f.http2.unwrap_or(false),
        rewrite_redirects: f.rewrite_redirects.unwrap_or(DEFAULT_REWRITE_REDIRECTS),
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
    })
}

fn cursors(p: &mut Problems, c: &Spanned<FileCursors>) -> Option<CursorSettings> {
    let mut keys = Vec::new();
    for k in &c.value.keys.value {
        let Ok(id) = u8::try_from(k.value.id.value) else {
            p.invalid(
                &k.value.id,
                "id",
                format!("is {}: key ids are 0 to 255", k.value.id.value),
            );
            continue;
        };
        if keys.iter().any(|existing: &CursorKey| existing.id == id) {
            p.invalid(
                &k.value.id,
                "id",
                format!("{id} is used twice: give every key its own id"),
            );
            continue;
        }
        let secret = match (&k.value.secret, &k.value.secret_env) {
            (Some(s), None) => s.value.clone(),
            (None, Some(var)) => match std::env::var(&var.value) {
                Ok(s) => s,
                Err(_) => {
                    p.invalid(
                        var,
                        "secret_env",
                        format!("names ${}, which is not set: export it (at least {MIN_SECRET_LEN} random bytes)", var.value),
                    );
                    continue;
                }
            },
            _ => {
                p.invalid(
                    k,
                    "keys",
                    "each key needs exactly one of `secret` or `secret_env`".to_owned(),
                );
                continue;
            }
        };
        if secret.len() < MIN_SECRET_LEN {
            p.invalid(
                k,
                "secret",
                format!(
                    "of key {id} is {} bytes: use at least {MIN_SECRET_LEN} random bytes, e.g. `openssl rand -base64 48`",
                    secret.len()
                ),
            );
            continue;
        }
        keys.push(CursorKey {
            id,
            secret: secret.into_bytes(),
        });
    }
    if c.value.keys.value.is_empty() {
        p.invalid(
            &c.value.keys,
            "keys",
            "is empty: declare at least one signing key".to_owned(),
        );
    }
    let ttl = c
        .value
        .ttl
        .as_ref()
        .map(|t| p.duration(Some(t), "ttl", Duration::from_secs(86_400)));
    if keys.is_empty() {
        return None;
    }
    // Ids are unique and keys non-empty (checked above), so a codec can be built from them.
    CursorCodec::new(keys.clone(), ttl).map(|_| CursorSettings { keys, ttl })
}

fn route(
    p: &mut Problems,
    name: String,
    r: &FileRoute,
    target: Target,
    has_cursors: bool,
    has_redis: bool,
) -> RouteConfig {
    if let (Target::Table(_), Some(t)) = (&target, &r.table)
        && !has_cursors
    {
        p.invalid(
            t,
            "table",
            "needs `cursors` keys: a table route's pages carry signed cursors".to_owned(),
        );
    }
    if matches!(target, Target::Table(_)) && r.path.value.contains('{') {
        p.invalid(
            &r.path,
            "path",
            format!(
                "is {:?}: a table route's path is fixed (it also serves <path>/export)",
                r.path.value
            ),
        );
    }
    if !r.path.value.starts_with('/') {
        p.invalid(
            &r.path,
            "path",
            format!("is {:?}: a path starts with `/`", r.path.value),
        );
    }
    if !r.path.value.is_ascii() {
        let encoded: String = r
            .path
            .value
            .bytes()
            .map(|b| {
                if b.is_ascii() {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        p.invalid(
            &r.path,
            "path",
            format!(
                "is {:?}: clients send non-ASCII characters percent-encoded; write {encoded}",
                r.path.value
            ),
        );
    }
    let methods = r.methods.as_ref().map(|list| {
        if list.value.is_empty() {
            p.invalid(
                list,
                "methods",
                "is empty: remove it to match every method".to_owned(),
            );
        }
        list.value
            .iter()
            .filter_map(|m| {
                let ok = !m.value.is_empty() && m.value.bytes().all(|b| b.is_ascii_uppercase());
                let method = Method::from_bytes(m.value.as_bytes()).ok().filter(|_| ok);
                if method.is_none() {
                    p.invalid(
                        m,
                        "methods",
                        format!(
                            "contains {:?}: write methods in capitals, e.g. GET",
                            m.value
                        ),
                    );
                }
                method
            })
            .collect()
    });
    let list = r
        .list
        .as_ref()
        .map(|l| list::list(p, &name, l, has_cursors));
    if let (Some(l), Some(methods)) = (&r.list, &r.methods)
        && !methods.value.iter().any(|m| m.value == "GET")
    {
        p.invalid(
            l,
            "list",
            "applies to GET (and HEAD) requests, but this route's `methods` has no GET: add GET or remove `list`".to_owned(),
        );
    }
    RouteConfig {
        name,
        path: r.path.value.clone(),
        methods,
        target,
        list,
        timeouts: TimeoutOverrides {
            response: r
                .response_timeout
                .as_ref()
                .map(|t| p.duration(Some(t), "response_timeout", DEFAULT_RESPONSE_TIMEOUT)),
            idle: r
                .idle_timeout
                .as_ref()
                .map(|t| p.duration(Some(t), "idle_timeout", DEFAULT_IDLE_TIMEOUT)),
        },
        limits: r.limits.as_ref().map(|l| limits::limits(p, l, has_redis)),
        allow_read_body: r.allow_read_body.unwrap_or(false),
    }
}
