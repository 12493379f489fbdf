//! Who the client is: the peer address of a request's connection, rendered once per connection
//! for the forwarding headers. A leaf module: the server sets it, the layers read it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::HeaderValue;

/// The client's address, stored in request extensions by the server and rendered once per
/// connection for the forwarding headers.
#[derive(Debug, Clone)]
pub struct ClientAddr {
    /// The peer's address.
    pub addr: SocketAddr,
    /// The IP as `X-Forwarded-For` carries it.
    rendered: HeaderValue,
    /// The IP as a `Forwarded` node (IPv6 quoted and bracketed, RFC 7239 §6).
    node: Arc<str>,
}

impl ClientAddr {
    /// Renders `addr` once.
    pub fn new(addr: SocketAddr) -> Self {
        let ip = addr.ip();
        let node = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("\"[{v6}]\""),
        };
        let rendered = HeaderValue::from_str(&ip.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Self {
            addr,
            rendered,
            node: Arc::from(node),
        }
    }

    /// The IP as `X-Forwarded-For` carries it.
    pub fn rendered(&self) -> &HeaderValue {
        &self.rendered
    }

    /// The IP as a `Forwarded` node: IPv6 quoted and bracketed (RFC 7239 §6).
    pub fn node(&self) -> &str {
        &self.node
    }
}
