//! The listener's settings ([`ServerConfig`]) read from the file.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::str::FromStr;

use serde_saphyr::Spanned;

use super::Problems;
use super::{Databases, Upstreams};
use crate::client_addr::TrustedProxies;
use crate::config::defaults::*;
use crate::config::file::FileConfig;
use crate::config::{AdminConfig, ServerConfig, TracesConfig};

/// The listener's settings; `None` when `listen` is not an address (the problem is recorded).
pub(super) fn server(p: &mut Problems, file: &FileConfig) -> Option<ServerConfig> {
    let listen = match &file.listen {
        Some(l) => p.address(l, "listen"),
        None => SocketAddr::from_str(DEFAULT_LISTEN).ok(),
    };
    let (admin_listen, admin_max_connections) = admin_listener(p, file);
    apart(p, file, listen, admin_listen);
    let (max_connections, max_connections_per_client) = connections(p, file);
    let trusted_proxies = trusted_proxies(p, file);
    let max_head_bytes = p.size(
        file.max_head_bytes.as_ref(),
        "max_head_bytes",
        DEFAULT_MAX_HEAD_BYTES,
        (8 * 1024, 1024 * 1024),
        "a head's memory is held per connection (max_connections x max_head_bytes), so ",
    );
    let http2_max_resets = http2_max_resets(p, file);
    let send_buffer = file.send_buffer.as_ref().map(|value| {
        p.size(
            Some(value),
            "send_buffer",
            MIN_SEND_BUFFER,
            (MIN_SEND_BUFFER, MAX_SEND_BUFFER),
            "a socket's send buffer is kernel memory per connection (unset, the kernel sizes it), so ",
        )
    });
    let drain_delay = p.delay(
        file.drain_delay.as_ref(),
        "drain_delay",
        DEFAULT_DRAIN_DELAY,
    );
    let mut duration =
        |value: &Option<Spanned<String>>, key, default| p.duration(value.as_ref(), key, default);
    Some(ServerConfig {
        listen: listen?,
        admin_listen,
        admin_max_connections,
        drain_delay,
        shutdown_grace: duration(
            &file.shutdown_grace,
            "shutdown_grace",
            DEFAULT_SHUTDOWN_GRACE,
        ),
        max_connections,
        max_connections_per_client,
        header_read_timeout: duration(
            &file.header_read_timeout,
            "header_read_timeout",
            DEFAULT_HEADER_READ_TIMEOUT,
        ),
        max_head_bytes,
        send_timeout: duration(&file.send_timeout, "send_timeout", DEFAULT_SEND_TIMEOUT),
        send_buffer,
        http2_keepalive_interval: duration(
            &file.http2_keepalive_interval,
            "http2_keepalive_interval",
            DEFAULT_HTTP2_KEEPALIVE_INTERVAL,
        ),
        http2_keepalive_timeout: duration(
            &file.http2_keepalive_timeout,
            "http2_keepalive_timeout",
            DEFAULT_HTTP2_KEEPALIVE_TIMEOUT,
        ),
        http2_idle_timeout: duration(
            &file.http2_idle_timeout,
            "http2_idle_timeout",
            DEFAULT_HTTP2_IDLE_TIMEOUT,
        ),
        http2_max_resets,
        trusted_proxies,
        access_log: file.access_log.unwrap_or(DEFAULT_ACCESS_LOG),
        traces: traces(p, file),
        trace_context_from_anyone: trace_context(p, file),
        tls: file
            .tls
            .as_ref()
            .and_then(|tls| super::tls::listener(p, tls)),
    })
}

/// `trace_context`: whether any client's trace context passes (`anyone`) or only a trusted
/// proxy's (`trusted`, the default).
fn trace_context(p: &mut Problems, file: &FileConfig) -> bool {
    p.choice(
        file.trace_context.as_ref(),
        "trace_context",
        [("trusted", false), ("anyone", true)],
        " (any client's traceparent reaches the upstream, not only a trusted proxy's)",
    )
}

/// `traces`: the collector's URL, the service name and the sample ratio.
fn traces(p: &mut Problems, file: &FileConfig) -> Option<TracesConfig> {
    let traces = &file.traces.as_ref()?.value;
    let endpoint = match traces.endpoint.value.parse::<http::Uri>() {
        Ok(uri) if uri.scheme_str() == Some("http") && uri.host().is_some() => {
            // A bare collector address gets OTLP's traces path, as OTEL_EXPORTER_OTLP_ENDPOINT does.
            if uri.path() == "/" && !traces.endpoint.value.ends_with('/') {
                format!("{}v1/traces", uri).parse().ok()
            } else {
                Some(uri)
            }
        }
        _ => {
            p.invalid(
                &traces.endpoint,
                "traces.endpoint",
                "is not an http:// URL: write the collector's OTLP/HTTP address, such as http://127.0.0.1:4318/v1/traces (https:// collectors are not supported yet: use a local collector or agent)".to_owned(),
            );
            None
        }
    };
    let service_name = match &traces.service_name {
        Some(name) if name.value.trim().is_empty() => {
            p.invalid(
                name,
                "traces.service_name",
                "is empty: name the service, such as pagegate-events".to_owned(),
            );
            None
        }
        Some(name) => Some(name.value.clone()),
        None => Some(DEFAULT_TRACES_SERVICE_NAME.to_owned()),
    };
    let sample_ratio = match &traces.sample_ratio {
        Some(ratio) if !(0.0..=1.0).contains(&ratio.value) => {
            p.invalid(
                ratio,
                "traces.sample_ratio",
                format!(
                    "is {}: write a share between 0 and 1, such as 0.1 for one trace in ten",
                    ratio.value
                ),
            );
            None
        }
        Some(ratio) => Some(ratio.value),
        None => Some(DEFAULT_TRACES_SAMPLE_RATIO),
    };
    Some(TracesConfig {
        endpoint: endpoint?,
        service_name: service_name?,
        sample_ratio: sample_ratio?,
    })
}

/// Warns of an admin listener on the address requests are served on (the second bind would
/// fail after the first, with no line to point at). A warning, not a refusal: a deployment
/// may part them with `PAGEGATE_LISTEN` or `PAGEGATE_ADMIN_LISTEN`.
fn apart(
    p: &mut Problems,
    file: &FileConfig,
    listen: Option<SocketAddr>,
    admin: Option<SocketAddr>,
) {
    let clash = |a: SocketAddr, b: SocketAddr| {
        let any = a.ip().is_unspecified() || b.ip().is_unspecified();
        a.port() == b.port() && a.port() != 0 && (any || a.ip() == b.ip())
    };
    let at = file.admin.as_ref().and_then(|a| a.value.listen.as_ref());
    if let (Some(served), Some(admin), Some(at)) = (listen, admin, at)
        && clash(served, admin)
    {
        let reason = format!(
            "is {admin}, which `listen` ({served}) takes too: unless an override parts them, \
             the second listener cannot start; give the admin listener another port (e.g. \
             127.0.0.1:9090)"
        );
        p.warn(at, "admin.listen", reason);
    }
}

/// `admin.listen` (or `metrics_listen`, its old name) and `admin.max_connections`.
fn admin_listener(p: &mut Problems, file: &FileConfig) -> (Option<SocketAddr>, usize) {
    let admin = file.admin.as_ref().map(|a| &a.value);
    let admin_listen = match (admin.and_then(|a| a.listen.as_ref()), &file.metrics_listen) {
        (Some(_), Some(old)) => {
            p.invalid(
                old,
                "metrics_listen",
                "and `admin.listen` are both set: `admin.listen` replaced it; remove metrics_listen".to_owned(),
            );
            None
        }
        (Some(listen), None) => p.address(listen, "admin.listen"),
        (None, Some(old)) => {
            let reason = "is read as `admin.listen`, which replaced it: write `admin: {listen: …}`";
            p.warn(old, "metrics_listen", reason.to_owned());
            p.address(old, "metrics_listen")
        }
        (None, None) => None,
    };
    let admin_max_connections = admin
        .and_then(|a| a.max_connections.as_ref())
        .and_then(|m| {
            let fix = "keep it between 1 and 1024: probes and scrapes need few";
            p.whole(m, "admin.max_connections", 1..=1024, fix)
        })
        .map_or(DEFAULT_ADMIN_MAX_CONNECTIONS, |n| {
            usize::try_from(n).unwrap_or(DEFAULT_ADMIN_MAX_CONNECTIONS)
        });
    (admin_listen, admin_max_connections)
}

/// `max_connections` and `max_connections_per_client`.
fn connections(p: &mut Problems, file: &FileConfig) -> (usize, Option<NonZeroU32>) {
    let max_connections = match &file.max_connections {
        Some(m) if m.value.0 == 0 => {
            p.invalid(m, "max_connections", "must be at least 1".to_owned());
            DEFAULT_MAX_CONNECTIONS
        }
        Some(m) => usize::try_from(m.value.0).unwrap_or(usize::MAX),
        None => DEFAULT_MAX_CONNECTIONS,
    };
    let per_client = file.max_connections_per_client.as_ref().and_then(|m| {
        let cap = u32::try_from(m.value.0).ok().and_then(NonZeroU32::new);
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
    (max_connections, per_client)
}

/// `trusted_proxies`: addresses and CIDR ranges (and the key it replaced, refused by name).
fn trusted_proxies(p: &mut Problems, file: &FileConfig) -> TrustedProxies {
    if let Some(old) = &file.trust_forwarded {
        p.invalid(
            old,
            "trust_forwarded",
            "was replaced by `trusted_proxies`: list the addresses of the proxies in front of pagegate, e.g. `trusted_proxies: [10.0.0.0/8]`; with none listed, clients' forwarding headers are replaced".to_owned(),
        );
    }
    let nets = file.trusted_proxies.iter();
    TrustedProxies::new(nets.filter_map(|e| net(p, e, "trusted_proxies")).collect())
}

/// `http2_max_resets`: streams a client may cancel per connection within 10 s.
fn http2_max_resets(p: &mut Problems, file: &FileConfig) -> NonZeroU32 {
    let Some(m) = &file.http2_max_resets else {
        return DEFAULT_HTTP2_MAX_RESETS;
    };
    u32::try_from(m.value.0)
        .ok()
        .and_then(NonZeroU32::new)
        .unwrap_or_else(|| {
            p.invalid(
                m,
                "http2_max_resets",
                "must be a whole number from 1 to 4294967295 (streams a client may cancel per connection within 10s)"
                    .to_owned(),
            );
            DEFAULT_HTTP2_MAX_RESETS
        })
}

/// `admin.allow` and `admin.ready_requires`: the admin settings that reload.
pub(super) fn admin(
    p: &mut Problems,
    file: &FileConfig,
    (upstreams, postgres): (&Upstreams, &Databases),
) -> AdminConfig {
    let admin = file.admin.as_ref().map(|a| &a.value);
    let allow = match admin.and_then(|a| a.allow.as_ref()) {
        None => DEFAULT_ADMIN_ALLOW
            .iter()
            .filter_map(|net| net.parse().ok())
            .collect(),
        Some(list) => list
            .value
            .iter()
            .filter_map(|entry| net(p, entry, "admin.allow"))
            .collect(),
    };
    let mut ready_requires = Vec::new();
    for name in admin
        .and_then(|a| a.ready_requires.as_ref())
        .iter()
        .flat_map(|l| &l.value)
    {
        let used = |db: &str| {
            file.routes.iter().any(|r| {
                r.value
                    .table
                    .as_ref()
                    .is_some_and(|t| t.value.database.value == db)
            })
        };
        if postgres.contains_key(&name.value) && !used(&name.value) {
            p.invalid(
                name,
                "admin.ready_requires",
                format!(
                    "names database `{}`, which no table route uses, so pagegate holds no \
                     connection to it and readiness could never pass; remove it from the list",
                    name.value
                ),
            );
        } else if upstreams.contains_key(&name.value) || postgres.contains_key(&name.value) {
            ready_requires.push(name.value.clone());
        } else {
            let known: Vec<&str> = upstreams
                .keys()
                .chain(postgres.keys())
                .map(String::as_str)
                .collect();
            p.invalid(
                name,
                "admin.ready_requires",
                format!(
                    "names `{}`, which is neither an upstream nor a database; declared: {}",
                    name.value,
                    known.join(", ")
                ),
            );
        }
    }
    AdminConfig {
        allow,
        ready_requires,
    }
}

/// An address or CIDR range; an address is its own /32 or /128.
fn net(p: &mut Problems, entry: &Spanned<String>, key: &'static str) -> Option<ipnet::IpNet> {
    let text = entry.value.trim();
    let net = text
        .parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
    match net {
        Ok(net) => Some(net.trunc()),
        Err(_) => {
            p.invalid(
                entry,
                key,
                format!("contains {text:?}: write an address or a CIDR range, such as 10.0.0.5 or 10.0.0.0/8"),
            );
            None
        }
    }
}
