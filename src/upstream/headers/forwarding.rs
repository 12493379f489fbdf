//! Forwarding headers at the hop: `X-Forwarded-For/-Proto/-Host` and RFC 7239 `Forwarded`
//! replaced (or, behind a trusted proxy, appended to), what else a client claims about where
//! it came from removed, and `Host` set as the upstream is configured.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::client_addr::ClientAddr;
use crate::upstream::config::HostMode;

/// Adds this hop to the forwarding headers and sets `Host` as the upstream is configured.
///
/// With `trust` (a proxy of yours sits in front of pagegate), `X-Forwarded-For` and
/// `Forwarded` are appended to and `X-Forwarded-Proto`/`-Host` kept when present. Without it
/// (the default), whatever the client sent in them is replaced: a client cannot make the
/// backend believe it came from elsewhere or build links to another host. Its other claims of
/// origin are removed, but for the headers the configuration's limits and identities read
/// (`decided`): the backend sees the key pagegate counted.
pub(crate) fn set_forwarding(
    headers: &mut HeaderMap,
    client: Option<&ClientAddr>,
    host: Option<&HeaderValue>,
    mode: &HostMode,
    upstream_authority: Option<&HeaderValue>,
    (trust, decided): (bool, &[HeaderName]),
) {
    if !trust {
        remove_client_claims(headers, decided);
    }
    match (trust, client) {
        (false, Some(client)) => replace_forwarding(headers, client, host),
        _ => chain_forwarding(headers, client, host, trust),
    }
    let value = match mode {
        HostMode::Upstream => upstream_authority.cloned(),
        HostMode::Preserve => host.cloned(),
        HostMode::Fixed(value) => Some(value.clone()),
    };
    if let Some(value) = value {
        headers.insert(header::HOST, value);
    }
}

/// Headers besides the four pagegate sets that some framework or proxy reads as the client's
/// address, scheme, port or prefix: nginx's `real_ip_header X-Real-IP`, Rack's
/// `X-Forwarded-Ssl` (which wins over `X-Forwarded-Proto`), Spring's `X-Forwarded-Prefix`. Any
/// other `x-forwarded-*` name counts too.
const CLIENT_CLAIMS: [&str; 7] = [
    "x-real-ip",
    "client-ip",
    "true-client-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "front-end-https",
    "x-url-scheme",
];

/// Removes what a client that is not a trusted proxy claims about where it came from
/// ([`CLIENT_CLAIMS`], `x-forwarded-*`), spelled with `-` or `_` (CGI-style servers read both
/// as `_`), but for `decided`. One pass over the few names a request has settles the common
/// case of none.
fn remove_client_claims(headers: &mut HeaderMap, decided: &[HeaderName]) {
    super::remove_names(headers, |name| {
        let dashed = super::dashed(name);
        (dashed.starts_with("x-forwarded-") || CLIENT_CLAIMS.contains(&&*dashed))
            && !decided.contains(name)
    });
}

/// The common case, made cheap: whatever the client sent is replaced (`insert` drops every
/// earlier value of a name), with the address rendered once per connection.
fn replace_forwarding(headers: &mut HeaderMap, client: &ClientAddr, host: Option<&HeaderValue>) {
    headers.insert(X_FORWARDED_FOR, client.rendered().clone());
    let scheme = client.scheme();
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(scheme));
    let forwarded = match host.and_then(|h| h.to_str().ok()) {
        Some(host) => {
            let mut element = String::with_capacity(64);
            element.push_str("for=");
            element.push_str(client.node());
            element.push_str(";proto=");
            element.push_str(scheme);
            element.push_str(";host=\"");
            // Quotes and backslashes dropped, so the host stays one quoted string; most hosts
            // have none, and are copied whole.
            if host.contains(['"', '\\']) {
                element.extend(host.chars().filter(|c| !matches!(c, '"' | '\\')));
            } else {
                element.push_str(host);
            }
            element.push('"');
            // The string's buffer becomes the value's: no second copy.
            HeaderValue::from_maybe_shared(bytes::Bytes::from(element)).ok()
        }
        None => HeaderValue::from_str(&format!("for={};proto={scheme}", client.node())).ok(),
    };
    match forwarded {
        Some(value) => headers.insert(FORWARDED, value),
        None => headers.remove(FORWARDED),
    };
    match host {
        Some(host) => headers.insert(X_FORWARDED_HOST, host.clone()),
        None => headers.remove(X_FORWARDED_HOST),
    };
}

/// With a trusted proxy in front, or no client address: chains are kept and appended to.
fn chain_forwarding(
    headers: &mut HeaderMap,
    client: Option<&ClientAddr>,
    host: Option<&HeaderValue>,
    trust: bool,
) {
    let scheme = client.map_or("http", ClientAddr::scheme);
    let client = client.map(|c| c.addr);
    let joined = |headers: &HeaderMap, name: &str| -> Option<String> {
        let values: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        (trust && !values.is_empty()).then(|| values.join(", "))
    };
    // Proto and host are single values: the first (client-facing) one counts.
    let first = |v: String| v.split(',').next().unwrap_or_default().trim().to_owned();
    let proto = joined(headers, "x-forwarded-proto").map_or_else(|| scheme.to_owned(), first);
    let forwarded_host = joined(headers, "x-forwarded-host").map(first);
    let xff = joined(headers, "x-forwarded-for");
    let forwarded = joined(headers, "forwarded");
    for name in [
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "forwarded",
    ] {
        headers.remove(name);
    }
    if let Some(client) = client {
        let ip = client.ip();
        let chain = xff.map_or_else(|| ip.to_string(), |existing| format!("{existing}, {ip}"));
        insert(headers, "x-forwarded-for", &chain);
        let node = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("\"[{v6}]\""),
        };
        let mut element = format!("for={node};proto={proto}");
        if let Some(host) = host.and_then(|h| h.to_str().ok()) {
            element.push_str(&format!(";host=\"{}\"", host.replace(['"', '\\'], "")));
        }
        let value = forwarded.map_or_else(
            || element.clone(),
            |existing| format!("{existing}, {element}"),
        );
        insert(headers, "forwarded", &value);
    } else {
        // No client address to add (not over TCP): keep the trusted chains as they came.
        if let Some(chain) = &xff {
            insert(headers, "x-forwarded-for", chain);
        }
        if let Some(chain) = &forwarded {
            insert(headers, "forwarded", chain);
        }
    }
    insert(headers, "x-forwarded-proto", &proto);
    match (forwarded_host, host) {
        (Some(kept), _) => insert(headers, "x-forwarded-host", &kept),
        (None, Some(host)) => {
            headers.insert("x-forwarded-host", host.clone());
        }
        (None, None) => {}
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const FORWARDED: HeaderName = header::FORWARDED;

fn insert(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}
