//! The settings the listener fixes at start ([`ServerConfig`]): where it listens, its
//! connection caps and deadlines, HTTP/2 protections, trusted proxies and the access log. A
//! reload compares them whole and names every key that differs; the rest of the config,
//! held-page budgets included, reloads.

use std::net::SocketAddr;
use std::time::Duration;

/// The listener's settings, fixed while pagegate runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Where clients connect.
    pub listen: SocketAddr,
    /// The admin listener's address (`admin.listen`): probes, metrics, the active config and
    /// the operator's verbs; none when unset.
    pub admin_listen: Option<SocketAddr>,
    /// Most connections the admin listener serves at once (`admin.max_connections`).
    pub admin_max_connections: usize,
    /// How long `/ready` answers 503 while traffic is still served, after a shutdown signal
    /// and before the listener closes.
    pub drain_delay: Duration,
    /// How long open requests may finish after the listener closes.
    pub shutdown_grace: Duration,
    /// Most client connections served at once.
    pub max_connections: usize,
    /// Most connections from one client address (IPv6 by /64); `None`: no cap.
    pub max_connections_per_client: Option<std::num::NonZeroU32>,
    /// Time to receive a request head once a connection waits for one.
    pub header_read_timeout: Duration,
    /// Largest request head, in bytes.
    pub max_head_bytes: u64,
    /// Longest a write to a client may wait.
    pub send_timeout: Duration,
    /// Each client socket's kernel send buffer (`SO_SNDBUF`), in bytes; `None`: the kernel's
    /// autotuning.
    pub send_buffer: Option<u64>,
    /// Interval of HTTP/2 keep-alive PINGs.
    pub http2_keepalive_interval: Duration,
    /// Time to answer an HTTP/2 PING.
    pub http2_keepalive_timeout: Duration,
    /// Time an HTTP/2 connection may stay open with no stream before GOAWAY.
    pub http2_idle_timeout: Duration,
    /// Streams an HTTP/2 client may cancel per connection within [`super::defaults::HTTP2_RESET_WINDOW`].
    pub http2_max_resets: std::num::NonZeroU32,
    /// Peers whose forwarding headers and request ids are believed.
    pub trusted_proxies: crate::client_addr::TrustedProxies,
    /// Write one access-log event per request when its response body ends.
    pub access_log: bool,
    /// Where spans go, when tracing is on (`traces`).
    pub traces: Option<crate::telemetry::TracesConfig>,
    /// Pass any client's trace context upstream (`trace_context: anyone`), not only a trusted
    /// proxy's (`trusted`, the default); with `traces`, its W3C one is replaced either way.
    pub trace_context_from_anyone: bool,
    /// The listener's TLS (`tls`); none: plaintext. Turning it on or off needs a restart; its
    /// files and their contents reload.
    pub(crate) tls: Option<crate::tls::ListenerTls>,
}

impl ServerConfig {
    /// The keys whose values differ between `self` and `other`, in file order.
    pub(crate) fn differences(&self, other: &Self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        macro_rules! compare {
            ($($key:ident),* $(,)?) => {
                // Destructured whole, so a field added later fails to compile until listed.
                let Self { $($key,)* tls } = self;
                if tls.is_some() != other.tls.is_some() {
                    keys.push("tls");
                }
                $(if *$key != other.$key {
                    keys.push(file_key(stringify!($key)));
                })*
            };
        }
        compare!(
            listen,
            admin_listen,
            admin_max_connections,
            drain_delay,
            shutdown_grace,
            max_connections,
            max_connections_per_client,
            header_read_timeout,
            max_head_bytes,
            send_timeout,
            send_buffer,
            http2_keepalive_interval,
            http2_keepalive_timeout,
            http2_idle_timeout,
            http2_max_resets,
            trusted_proxies,
            access_log,
            traces,
            trace_context_from_anyone,
        );
        keys
    }
}

/// The key a field is written as in the file.
fn file_key(field: &'static str) -> &'static str {
    match field {
        "admin_listen" => "admin.listen",
        "admin_max_connections" => "admin.max_connections",
        "trace_context_from_anyone" => "trace_context",
        other => other,
    }
}

/// The admin listener's settings that reload: who may use its verbs, and what readiness needs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AdminConfig {
    /// Peers answered on `POST /reload`, `POST /drain` and `PUT /log-level`.
    pub allow: Vec<ipnet::IpNet>,
    /// Upstreams and databases, by name, whose reachability `/ready` requires.
    pub ready_requires: Vec<String>,
}
