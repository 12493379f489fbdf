//! Who the client is, decided once per request for every later use (forwarding headers, request
//! ids, logs, per-client limits). A leaf module: the server sets it, the layers read it.
//!
//! The peer is the client unless it is one of the `trusted_proxies`. Behind a trusted proxy
//! the client is the **right-most** `X-Forwarded-For` hop that is not itself trusted: each
//! proxy appends the address it saw, so the left-most entries are whatever the client wrote.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use http::{HeaderMap, HeaderValue};
use ipnet::IpNet;

/// The value of header `name` when a request carries it exactly once, not empty: a repeated
/// header is ambiguous (which one did the layer in front set, which one will the backend
/// read?), so it counts as absent. What a limit key, a table scope, a tenant match and a
/// bearer token are read with.
pub(crate) fn single_header<'a>(
    headers: &'a HeaderMap,
    name: &http::HeaderName,
) -> Option<&'a HeaderValue> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(value), None) if !value.is_empty() => Some(value),
        _ => None,
    }
}

/// The proxies whose forwarding headers (and request ids) are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Trusts the addresses in `nets`.
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self(nets)
    }

    /// Whether `ip` is a trusted proxy (IPv4-mapped IPv6 addresses count as their IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }
}

/// A request's client: the connection's peer, and who the client is behind it.
#[derive(Debug, Clone)]
pub struct ClientAddr {
    /// The peer's address.
    pub addr: SocketAddr,
    /// The peer is a trusted proxy.
    trusted: bool,
    /// The client: the peer, or the right-most untrusted forwarded hop behind a trusted peer.
    client: IpAddr,
    /// The peer's IP as `X-Forwarded-For` carries it.
    rendered: HeaderValue,
    /// The peer's IP as a `Forwarded` node (IPv6 quoted and bracketed, RFC 7239 §6).
    node: Arc<str>,
    /// The connection's `max_connections` slot, for whatever outlives a request on it (an
    /// upgraded connection's tunnel).
    slot: Option<Arc<dyn std::any::Any + Send + Sync>>,
    /// Closes the connection at once (a held page cut on HTTP/1).
    closer: Option<Closer>,
    /// The connection is TLS (the forwarding headers say `proto=https`).
    tls: bool,
}

/// Closes one client connection at once (set by the server, used to cut a held page).
#[derive(Clone)]
pub struct Closer(pub Arc<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for Closer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Closer")
    }
}

impl ClientAddr {
    /// A connection's peer, rendered once; the client is the peer until [`Self::resolve`].
    pub fn new(addr: SocketAddr, trusted: &TrustedProxies) -> Self {
        let ip = addr.ip().to_canonical();
        let node = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("\"[{v6}]\""),
        };
        let rendered = HeaderValue::from_str(&ip.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Self {
            addr,
            trusted: trusted.contains(ip),
            client: ip,
            rendered,
            node: Arc::from(node),
            slot: None,
            closer: None,
            tls: false,
        }
    }

    /// Marks the connection as TLS.
    #[must_use]
    pub fn with_tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }

    /// The scheme the client spoke to pagegate: `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    /// Attaches the connection's `max_connections` slot.
    #[must_use]
    pub fn with_slot(mut self, slot: Arc<dyn std::any::Any + Send + Sync>) -> Self {
        self.slot = Some(slot);
        self
    }

    /// Attaches how to close the connection at once.
    #[must_use]
    pub fn with_closer(mut self, closer: Closer) -> Self {
        self.closer = Some(closer);
        self
    }

    /// How to close the connection at once, when the server said.
    pub fn closer(&self) -> Option<Closer> {
        self.closer.clone()
    }

    /// The connection's slot, to hold while something outlives a request.
    pub fn slot(&self) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        self.slot.clone()
    }

    /// Behind a trusted peer, finds the client in `X-Forwarded-For`: the right-most hop that is
    /// not a trusted proxy (if every hop is trusted, the left-most). A hop that is not an IP
    /// address ends the search there: nothing left of it can be believed.
    pub fn resolve(&mut self, headers: &HeaderMap, trusted: &TrustedProxies) {
        if !self.trusted {
            return;
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        for hop in hops.iter().rev() {
            // `ip`, `ip:port` and `[v6]:port` are all written by some proxy.
            let parsed = hop
                .parse::<IpAddr>()
                .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()));
            let Ok(ip) = parsed.map(|ip| ip.to_canonical()) else {
                return;
            };
            self.client = ip;
            if !trusted.contains(ip) {
                return;
            }
        }
    }

    /// Whether the peer is a trusted proxy: its forwarding headers and request id are kept.
    pub fn trusted(&self) -> bool {
        self.trusted
    }

    /// Who the client is.
    pub fn ip(&self) -> IpAddr {
        self.client
    }

    /// The client as limits count it: IPv6 clients grouped by /64, since one host usually
    /// holds a whole /64.
    pub fn key(&self) -> IpAddr {
        match self.client {
            IpAddr::V6(v6) => {
                let [a, b, c, d, ..] = v6.segments();
                IpAddr::V6(Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
            }
            v4 => v4,
        }
    }

    /// The peer's IP as `X-Forwarded-For` carries it.
    pub fn rendered(&self) -> &HeaderValue {
        &self.rendered
    }

    /// The peer's IP as a `Forwarded` node: IPv6 quoted and bracketed (RFC 7239 §6).
    pub fn node(&self) -> &str {
        &self.node
    }
}

/// Something an upgraded connection (a WebSocket tunnel) holds while it lives, put on the
/// request by a layer in front of the upstream: the route's concurrency slot, so a tunnel
/// counts against the route's limit until it closes, not only until its `101`.
#[derive(Clone)]
pub(crate) struct TunnelHold(pub Arc<dyn std::any::Any + Send + Sync>);

impl std::fmt::Debug for TunnelHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelHold").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
