//! Logs, metrics and traces: `tracing` through a non-blocking writer, Prometheus metrics that the
//! admin listener's `/metrics` encodes, OTLP spans ([`traces`]), and the access-log layer that
//! sits outermost in the stack.
//!
//! Nothing here runs per request but counter increments and, when the access log is on, one
//! event formatted into a buffer that a background thread writes in batches ([`log_writer`]):
//! a slow or full stdout drops lines (counted in `pagegate_log_dropped_lines`) rather than
//! stall requests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
mod access_log;
mod identity;
mod latency;
mod lifecycle;
mod live;
pub(crate) mod log_writer;
mod logging;
mod process;
mod route;
mod throttle;
mod traces;

pub(crate) use access_log::AccessLog;
pub use access_log::{AccessLogLayer, Outcome, REQUEST_ID};
use identity::Identities;
pub(crate) use identity::IdentityCounters;
use latency::Latency;
pub(crate) use latency::{TunnelOpen, UpstreamMetrics};
pub(crate) use lifecycle::Lifecycle;
pub(crate) use live::{Live, PoolSample};
use logging::LOG_DROPS;
pub(crate) use logging::{LogGuard, init, set_log_filter};
pub(crate) use route::ExportCounters;
pub use route::RouteMetrics;
use route::STATUS_SLOTS;
pub(crate) use throttle::Throttle;
pub(crate) use traces::TraceCx;

/// The most bytes of a request path a log line or a span holds: a client may send up to
/// `max_head_bytes` of path, which would fill the log buffer a few hundred lines at a time.
const MAX_LOGGED_PATH: usize = 1024;

/// `path` as logs and spans hold it: whole up to [`MAX_LOGGED_PATH`] bytes, else cut there
/// (at a character, before a `%` escape it would split) and marked with `…`.
pub(crate) fn logged_path(path: &str) -> std::borrow::Cow<'_, str> {
    if path.len() <= MAX_LOGGED_PATH {
        return path.into();
    }
    let mut cut = (0..=MAX_LOGGED_PATH)
        .rev()
        .find(|&i| path.is_char_boundary(i))
        .unwrap_or(0);
    // `%4` would read as a broken escape to a pipeline that decodes paths.
    if let Some(at) = path[..cut]
        .get(cut.saturating_sub(2)..)
        .and_then(|t| t.find('%'))
    {
        cut = cut.saturating_sub(2) + at;
    }
    format!("{}…", &path[..cut]).into()
}
pub(crate) use traces::TracesConfig;
pub use traces::{Traces, TracesError};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CutLabels {
    route: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    route: String,
    limit: &'static str,
    decision: &'static str,
    /// An override's name, `default` or `exempt`: from the config, never a client's key.
    tenant_class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReportLabels {
    route: String,
    what: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CursorLabels {
    route: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtectionLabels {
    reason: &'static str,
}

/// pagegate's Prometheus metrics. Labels are bounded: route names come from the config.
///
/// Shared by every generation, so counts survive a reload; each route resolves its own
/// handles once, with [`Metrics::route`].
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    list_cuts: Family<CutLabels, Counter>,
    order_violations: Family<RouteLabels, Counter>,
    export_rows: Family<RouteLabels, Counter>,
    export_chunks_cut: Family<RouteLabels, Counter>,
    cursor_failures: Family<CursorLabels, Counter>,
    protections: Family<ProtectionLabels, Counter>,
    limits: Family<LimitLabels, Counter>,
    limit_evictions: Family<RouteLabels, Counter>,
    limit_overflow: Family<RouteLabels, Counter>,
    reported: Family<ReportLabels, Counter>,
    log_dropped: Counter,
    log_dropped_seen: AtomicU64,
    /// Requests whose client left before any answer's head.
    abandoned: Counter,
    /// Held through a scrape: sampling clears and sets gauges, which two scrapes at once
    /// would interleave.
    scrape: std::sync::Mutex<()>,
    /// Reloads, readiness and backends' reachability.
    pub(crate) lifecycle: Lifecycle,
    /// Durations and bytes.
    latency: Latency,
    /// What is open right now, read at each scrape.
    pub(crate) live: Live,
    /// Tokens and key fetches.
    identities: Identities,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut root = Registry::default();
        // The process's series keep their standard unprefixed names.
        root.register_collector(Box::new(process::Process));
        let registry = root.sub_registry_with_prefix("pagegate");
        let requests = Family::<RequestLabels, Counter>::default();
        let list_cuts = Family::<CutLabels, Counter>::default();
        let order_violations = Family::<RouteLabels, Counter>::default();
        let log_dropped = Counter::default();
        let abandoned = Counter::default();
        registry.register(
            "requests_abandoned",
            "Requests whose client left before an answer's head (counted under no route: pagegate had not answered yet)",
            abandoned.clone(),
        );
        let protections = Family::<ProtectionLabels, Counter>::default();
        let reported = Family::<ReportLabels, Counter>::default();
        let cursor_failures = Family::<CursorLabels, Counter>::default();
        let (export_rows, export_chunks_cut) = register_exports(registry);
        registry.register(
            "cursor_failures",
            "Cursors refused, by route and reason (too_long, not_base64, truncated, unsupported_version, unknown_key, bad_signature, expired, wrong_route, wrong_filters, bad_key)",
            cursor_failures.clone(),
        );
        registry.register(
            "reported",
            "What a list policy in report-only mode would have done (refused, clamped, rewritten, cut), by route",
            reported.clone(),
        );
        let (limits, limit_evictions, limit_overflow) = register_limits(registry);
        registry.register(
            "protections",
            "Requests and connections pagegate refused or cut to protect itself or the backend, by reason",
            protections.clone(),
        );
        registry.register(
            "requests",
            "Requests answered, by route and status",
            requests.clone(),
        );
        registry.register(
            "list_cuts",
            "List responses cut at max_items or max_bytes, by route and reason",
            list_cuts.clone(),
        );
        registry.register(
            "order_violations",
            "List responses refused because the backend broke the key order",
            order_violations.clone(),
        );
        registry.register(
            "log_dropped_lines",
            "Log lines dropped because the log writer could not keep up",
            log_dropped.clone(),
        );
        let lifecycle = Lifecycle::new(registry);
        let latency = Latency::new(registry);
        let live = Live::new(registry);
        let identities = Identities::new(registry);
        Self {
            identities,
            registry: root,
            lifecycle,
            latency,
            live,
            requests,
            list_cuts,
            order_violations,
            protections,
            limits,
            limit_evictions,
            limit_overflow,
            reported,
            export_rows,
            export_chunks_cut,
            cursor_failures,
            log_dropped,
            log_dropped_seen: AtomicU64::new(0),
            abandoned,
            scrape: std::sync::Mutex::new(()),
        }
    }
}

/// The table exports' families: rows read, and chunks cut at `chunk_bytes`.
fn register_exports(
    registry: &mut Registry,
) -> (Family<RouteLabels, Counter>, Family<RouteLabels, Counter>) {
    let rows = Family::<RouteLabels, Counter>::default();
    let cut = Family::<RouteLabels, Counter>::default();
    registry.register(
        "export_rows",
        "Rows table routes' exports read from the database, by route",
        rows.clone(),
    );
    registry.register(
        "export_chunks_cut",
        "Export chunks that ended at chunk_bytes before chunk_rows rows, by route",
        cut.clone(),
    );
    (rows, cut)
}

impl Metrics {
    /// The handles of one route, resolved now so requests never look a label set up. Only a
    /// list route (`list`) has series for cuts and order violations.
    pub fn route(&self, name: &str, list: bool) -> Arc<RouteMetrics> {
        let route = || RouteLabels {
            route: name.to_owned(),
        };
        let cut = |reason| CutLabels {
            route: name.to_owned(),
            reason,
        };
        // One statement each: a family's guard must be dropped before the next lookup, which
        // may need the write lock.
        let cut_items = list.then(|| self.list_cuts.get_or_create(&cut("items")).clone());
        let cut_bytes = list.then(|| self.list_cuts.get_or_create(&cut("bytes")).clone());
        let order_violations = list.then(|| self.order_violations.get_or_create(&route()).clone());
        let (durations, response_bytes, request_bytes) = self.latency.route(name);
        Arc::new(RouteMetrics {
            name: Arc::from(name),
            durations,
            response_bytes,
            request_bytes,
            export_rows: self.export_rows.clone(),
            export_chunks_cut: self.export_chunks_cut.clone(),
            requests: self.requests.clone(),
            statuses: (0..STATUS_SLOTS).map(|_| OnceLock::new()).collect(),
            cut_items,
            cut_bytes,
            order_violations,
            protections: self.protections.clone(),
            limits: self.limits.clone(),
            limit_evictions: self.limit_evictions.get_or_create(&route()).clone(),
            reported: self.reported.clone(),
            cursor_failures: self.cursor_failures.clone(),
        })
    }

    /// The handles of one upstream, resolved when its client is built.
    pub(crate) fn upstream(&self, name: &str) -> UpstreamMetrics {
        self.latency.upstream(name, self.live.tunnels(name))
    }

    /// The counter of requests whose client left before an answer's head.
    pub(crate) fn abandoned(&self) -> Counter {
        self.abandoned.clone()
    }

    /// A counter of one protection (`reason`), resolved once by whoever counts it often.
    pub fn protection(&self, reason: &'static str) -> Counter {
        self.protections
            .get_or_create(&ProtectionLabels { reason })
            .clone()
    }

    /// The counter of route `route`'s uses of the one bucket new clients share at
    /// `max_clients`.
    pub fn limit_overflow(&self, route: &str) -> Counter {
        self.limit_overflow
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .clone()
    }

    /// The counters of identity `name`.
    pub(crate) fn identity(&self, name: &str) -> IdentityCounters {
        self.identities.counters(name)
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let _one = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        self.live.sample();
        if let Some(drops) = LOG_DROPS.get() {
            let now = drops.dropped_lines();
            let before = self.log_dropped_seen.swap(now, Ordering::Relaxed);
            self.log_dropped.inc_by(now.saturating_sub(before));
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// The limits' families: decisions, keys batched shared rates forgot, and requests decided on
/// the shared bucket at the key cap.
fn register_limits(
    registry: &mut Registry,
) -> (
    Family<LimitLabels, Counter>,
    Family<RouteLabels, Counter>,
    Family<RouteLabels, Counter>,
) {
    let limits = Family::<LimitLabels, Counter>::default();
    let limit_evictions = Family::<RouteLabels, Counter>::default();
    let limit_overflow = Family::<RouteLabels, Counter>::default();
    registry.register(
        "limit_decisions",
        "Requests a route's limits refused (decision=refused) or would have refused in report-only mode (decision=reported), by route and limit",
        limits.clone(),
    );
    registry.register(
        "limit_evictions",
        "Keys a route's batched shared rates (limits.batch) forgot because max_clients was reached; each is read from Redis again on its next request, by route",
        limit_evictions.clone(),
    );
    registry.register(
        "limit_overflow",
        "Uses of the one bucket new clients share because a route's per-client limiters held max_clients keys (a rate check per keyed limit, a paced piece, a quota charge per chunk): raise limits.max_clients if it grows, by route",
        limit_overflow.clone(),
    );
    (limits, limit_evictions, limit_overflow)
}
