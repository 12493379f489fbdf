//! Logs and metrics: `tracing` to stdout, Prometheus counters on an optional `/metrics` listener,
//! and the access-log layer that sits outermost in the stack.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::FutureExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::time::Instant;
use tower::{Layer, Service};

use crate::routing::Matched;
use crate::{Request, Response};

/// Starts logging. `RUST_LOG` picks the level (default `info`); `PAGEGATE_LOG_FORMAT=json`
/// writes one JSON object per line, for log shippers.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let result = if std::env::var("PAGEGATE_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    // A second init (tests start many proxies in one process) keeps the first subscriber.
    drop(result);
}

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

/// pagegate's Prometheus metrics. Labels are bounded: route names come from the config.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    list_cuts: Family<CutLabels, Counter>,
    order_violations: Family<RouteLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("pagegate");
        let requests = Family::<RequestLabels, Counter>::default();
        let list_cuts = Family::<CutLabels, Counter>::default();
        let order_violations = Family::<RouteLabels, Counter>::default();
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
        Self {
            registry,
            requests,
            list_cuts,
            order_violations,
        }
    }
}

impl Metrics {
    /// Counts a list response cut for `reason` (`items` or `bytes`).
    pub fn list_cut(&self, route: &str, reason: &'static str) {
        let labels = CutLabels {
            route: route.to_owned(),
            reason,
        };
        self.list_cuts.get_or_create(&labels).inc();
    }

    /// Counts a backend that broke the key order.
    pub fn order_violation(&self, route: &str) {
        let labels = RouteLabels {
            route: route.to_owned(),
        };
        self.order_violations.get_or_create(&labels).inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Logs one line per request and counts it; outermost, so it sees pagegate's own answers too.
#[derive(Debug, Clone)]
pub struct AccessLogLayer {
    metrics: Arc<Metrics>,
}

impl AccessLogLayer {
    /// A layer counting into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AccessLog {
            inner,
            metrics: Arc::clone(&self.metrics),
        }
    }
}

/// The service of [`AccessLogLayer`].
#[derive(Debug, Clone)]
pub struct AccessLog<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> Service<Request> for AccessLog<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let start = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let metrics = Arc::clone(&self.metrics);
        Box::pin(self.inner.call(req).map(move |result| {
            let Ok(response) = result;
            let route = response
                .extensions()
                .get::<Matched>()
                .map_or("-", Matched::name)
                .to_owned();
            let status = response.status().as_u16();
            tracing::info!(%method, %path, %route, status, elapsed_ms = start.elapsed().as_millis() as u64, "request");
            let labels = RequestLabels { route, status };
            metrics.requests.get_or_create(&labels).inc();
            Ok(response)
        }))
    }
}
