//! Time and bytes: how long requests take per route and outcome class, how many bytes they
//! send, how long each upstream takes to its first byte, and why upstream exchanges fail.
//! Every handle is resolved when a route or an upstream client is built.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Bucket bounds in seconds: OpenTelemetry's advice for HTTP durations.
pub(crate) const BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Status classes a duration is kept under: `1xx` to `5xx`.
pub(crate) const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurationLabels {
    route: String,
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamErrorLabels {
    upstream: String,
    cause: &'static str,
}

/// The families; see the module docs.
#[derive(Debug)]
pub(crate) struct Latency {
    durations: Histograms<DurationLabels>,
    response_bytes: Family<RouteLabels, Counter>,
    request_bytes: Family<RouteLabels, Counter>,
    first_byte: Histograms<UpstreamLabels>,
    upstream_errors: Family<UpstreamErrorLabels, Counter>,
}

impl Latency {
    /// The families, registered in `registry`.
    pub(crate) fn new(registry: &mut Registry) -> Self {
        let this = Self {
            durations: Family::new_with_constructor(histogram),
            response_bytes: Family::default(),
            request_bytes: Family::default(),
            first_byte: Family::new_with_constructor(histogram),
            upstream_errors: Family::default(),
        };
        registry.register_with_unit(
            "request_duration",
            "Time from a request's head to its response's last byte, by route and status class",
            Unit::Seconds,
            this.durations.clone(),
        );
        registry.register_with_unit(
            "response",
            "Response body bytes sent to clients, by route",
            Unit::Bytes,
            this.response_bytes.clone(),
        );
        registry.register_with_unit(
            "request",
            "Request body bytes relayed from clients to upstreams, by route",
            Unit::Bytes,
            this.request_bytes.clone(),
        );
        registry.register_with_unit(
            "upstream_first_byte",
            "Time from sending a request upstream to its response head, by upstream",
            Unit::Seconds,
            this.first_byte.clone(),
        );
        registry.register(
            "upstream_errors",
            "Upstream exchanges that failed before a response head, by upstream and cause (connect_refused, connect_timeout, connect, dns, reset, response_timeout, closed, malformed_answer, unasked_upgrade)",
            this.upstream_errors.clone(),
        );
        this
    }

    /// A route's duration histograms, one per status class, and its response and request byte
    /// counters.
    pub(crate) fn route(&self, name: &str) -> ([Histogram; 5], Counter, Counter) {
        let duration = |class| {
            let labels = DurationLabels {
                route: name.to_owned(),
                class,
            };
            self.durations.get_or_create(&labels).clone()
        };
        let labels = RouteLabels {
            route: name.to_owned(),
        };
        let response = self.response_bytes.get_or_create(&labels).clone();
        let request = self.request_bytes.get_or_create(&labels).clone();
        (CLASSES.map(duration), response, request)
    }

    /// An upstream's handles, with its gauge of open tunnels.
    pub(crate) fn upstream(&self, name: &str, tunnels: Gauge) -> UpstreamMetrics {
        let labels = UpstreamLabels {
            upstream: name.to_owned(),
        };
        UpstreamMetrics {
            name: name.to_owned(),
            first_byte: self.first_byte.get_or_create(&labels).clone(),
            errors: self.upstream_errors.clone(),
            tunnels,
        }
    }
}

/// One upstream's handles, held by its client.
#[derive(Debug, Clone)]
pub(crate) struct UpstreamMetrics {
    name: String,
    first_byte: Histogram,
    errors: Family<UpstreamErrorLabels, Counter>,
    tunnels: Gauge,
}

/// Counts a tunnel open until dropped.
#[derive(Debug)]
pub(crate) struct TunnelOpen(Gauge);

impl Drop for TunnelOpen {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl UpstreamMetrics {
    /// Counts a tunnel to this upstream as open until the guard drops.
    pub(crate) fn tunnel(&self) -> TunnelOpen {
        self.tunnels.inc();
        TunnelOpen(self.tunnels.clone())
    }

    /// Handles that count nowhere (a client built outside a generation).
    pub(crate) fn detached(name: &str) -> Self {
        Latency::new(&mut Registry::default()).upstream(name, Gauge::default())
    }

    /// Records the time to a response head.
    pub(crate) fn first_byte(&self, elapsed: std::time::Duration) {
        self.first_byte.observe(elapsed.as_secs_f64());
    }

    /// Counts a failed exchange by its cause.
    pub(crate) fn failed(&self, cause: &'static str) {
        let labels = UpstreamErrorLabels {
            upstream: self.name.clone(),
            cause,
        };
        self.errors.get_or_create(&labels).inc();
    }
}
