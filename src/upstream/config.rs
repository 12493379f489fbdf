//! The typed settings of one backend (`upstreams.NAME`) and a route's timeout overrides.

use std::time::Duration;

use http::Uri;

/// How the `Host` header reaches the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMode {
    /// The upstream URL's authority (the default).
    Upstream,
    /// The client's own `Host`.
    Preserve,
    /// This value.
    Fixed(http::HeaderValue),
}

/// One backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// Its name in the file.
    pub name: String,
    /// Scheme and authority requests go to.
    pub origin: Uri,
    /// Path prefix put before every request path (empty for `/`).
    pub base_path: String,
    /// The `Host` sent upstream.
    pub host: HostMode,
    /// Talk HTTP/2 with prior knowledge (h2c) instead of HTTP/1.1.
    pub http2: bool,
    /// Rewrite `Location` and `Content-Location` that point at this upstream to paths on
    /// pagegate (nginx's `proxy_redirect default`).
    pub rewrite_redirects: bool,
    /// The backend reads `/events.json` as `/events` with a format (Rails, Django REST
    /// framework), so a route matches a path without its extension too
    /// ([`crate::route_table`]).
    pub format_suffixes: bool,
    /// Time to open a connection.
    pub connect_timeout: Duration,
    /// Time until the response head.
    pub response_timeout: Duration,
    /// Longest pause between two body frames.
    pub idle_timeout: Duration,
    /// How long idle pooled connections live.
    pub pool_idle_timeout: Duration,
    /// Idle pooled connections kept.
    pub pool_max_idle: usize,
    /// TLS to an `https://` upstream; none for `http://`.
    pub(crate) tls: Option<crate::tls::UpstreamTls>,
}

/// Per-route replacements for an upstream's timeouts (an export and a page served by one
/// backend need different ones). `connect_timeout` belongs to the upstream's connection pool
/// and cannot be overridden per route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeoutOverrides {
    /// Replaces the upstream's `response_timeout`.
    pub response: Option<Duration>,
    /// Replaces the upstream's `idle_timeout`.
    pub idle: Option<Duration>,
}

impl UpstreamConfig {
    /// The request's URI as sent upstream: its base path, then the request's path and query
    /// as the client wrote them (the common case, no base path, copies nothing). HTTP/1.1
    /// sends it in origin form (`/path?query`); HTTP/2 needs the upstream's scheme and
    /// authority too.
    pub(super) fn uri_for(&self, uri: &http::Uri) -> Option<http::Uri> {
        let mut parts = http::uri::Parts::default();
        if self.http2 {
            let origin = self.origin.clone().into_parts();
            parts.scheme = origin.scheme;
            parts.authority = origin.authority;
        }
        let path_and_query = uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        parts.path_and_query = Some(if self.base_path.is_empty() {
            path_and_query
        } else {
            http::uri::PathAndQuery::try_from(format!("{}{path_and_query}", self.base_path)).ok()?
        });
        http::Uri::from_parts(parts).ok()
    }
}
