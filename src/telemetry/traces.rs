//! Traces (`traces:`): one server span per request, its parent taken from the request's W3C
//! `traceparent`/`tracestate`, with a child span for the upstream call (whose context the
//! upstream receives as its parent) or the database statement, sent to an OpenTelemetry
//! collector over OTLP/HTTP in batches. The access log carries each request's `trace_id` and
//! `span_id`.
//!
//! With `traces` unset nothing here runs: no span is made, and `traceparent`/`tracestate` reach
//! the upstream as a trusted proxy sent them (any client's with `trace_context: anyone`; see
//! [`crate::upstream`]'s forward).
//!
//! The exporter is opentelemetry-otlp's over hyper (opentelemetry-http's client, so no second
//! HTTP stack). Its batch processor exports from a thread of its own, outside the runtime, and
//! hyper needs the runtime: [`OnRuntime`] runs each export there.

use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{HeaderExtractor, HeaderInjector, HttpClient, HttpError};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};

/// Spans of each request, sent to an OpenTelemetry collector over OTLP/HTTP.
#[derive(Debug, Clone, PartialEq)]
pub struct TracesConfig {
    /// The collector's OTLP/HTTP traces URL, `/v1/traces` included.
    pub endpoint: http::Uri,
    /// The spans' `service.name`.
    pub service_name: String,
    /// The share of new traces sampled (0 to 1); a request's sampled parent decides for its
    /// own trace.
    pub sample_ratio: f64,
}

/// Longest the last spans are given to reach the collector at exit.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);

/// How long one export to the collector may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
#[error("traces: cannot build the OTLP exporter for {endpoint}: {reason}")]
pub struct TracesError {
    endpoint: String,
    reason: String,
}

/// pagegate's tracer; clones share it.
#[derive(Debug, Clone)]
pub struct Traces {
    tracer: SdkTracer,
    provider: SdkTracerProvider,
}

impl Traces {
    /// Starts exporting to `config`'s collector. Needs a Tokio runtime (exports run on it).
    pub fn start(config: &TracesConfig) -> Result<Self, TracesError> {
        let client = OnRuntime {
            client: opentelemetry_http::hyper::HyperClient::with_default_connector(
                EXPORT_TIMEOUT,
                None,
            ),
            runtime: tokio::runtime::Handle::current(),
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(config.endpoint.to_string())
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| TracesError {
                endpoint: config.endpoint.to_string(),
                reason: e.to_string(),
            })?;
        let sampler =
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sample_ratio)));
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(config.service_name.clone())
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(sampler)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("pagegate");
        Ok(Self { tracer, provider })
    }

    /// Sends the spans still buffered and stops, within [`SHUTDOWN_TIMEOUT`] so a collector
    /// that does not answer cannot hold the exit. Blocks: call it off the runtime's threads.
    pub fn shutdown(&self) {
        if let Err(error) = self.provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
            tracing::warn!(%error, "traces: the last spans could not be sent");
        }
    }

    /// A request's server span; its context for the layers below is the returned
    /// [`TraceCx`]. Its parent is read from `headers` when the peer is `trusted` (a proxy
    /// listed in `trusted_proxies`). From anyone else the span starts a trace of its own and
    /// only links to the client's: an untrusted client must not choose trace ids or force
    /// every one of its requests to be sampled.
    pub(crate) fn server_span(
        &self,
        method: &http::Method,
        path: &str,
        headers: &HeaderMap,
        trusted: bool,
    ) -> TraceCx {
        let sent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
        let (name, mut attributes) = method_attributes(method);
        attributes.push(KeyValue::new(
            "url.path",
            super::logged_path(path).into_owned(),
        ));
        let mut builder = self
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_attributes(attributes);
        let parent = if trusted {
            sent
        } else {
            let client = sent.span().span_context().clone();
            if client.is_valid() {
                builder =
                    builder.with_links(vec![opentelemetry::trace::Link::with_context(client)]);
            }
            Context::new()
        };
        let span = builder.start_with_context(&self.tracer, &parent);
        TraceCx {
            cx: parent.with_span(span),
            tracer: self.tracer.clone(),
        }
    }
}

/// A span's context, carried in a request's extensions so the layers below make their spans
/// its children. The span ends when the last clone is dropped.
#[derive(Debug, Clone)]
pub(crate) struct TraceCx {
    cx: Context,
    tracer: SdkTracer,
}

impl TraceCx {
    /// The trace and span ids, in hex, for the access log.
    pub(crate) fn ids(&self) -> (String, String) {
        let span = self.cx.span();
        let context = span.span_context();
        (
            context.trace_id().to_string(),
            context.span_id().to_string(),
        )
    }

    /// Names the server span after the route and records how the request ended.
    pub(crate) fn answered(
        &self,
        route: &str,
        status: Option<http::StatusCode>,
        outcome: &'static str,
    ) {
        let span = self.cx.span();
        span.set_attribute(KeyValue::new("pagegate.route", route.to_owned()));
        span.set_attribute(KeyValue::new("pagegate.outcome", outcome));
        if let Some(status) = status {
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status.as_u16()),
            ));
            if status.is_server_error() {
                span.set_status(Status::error(status.to_string()));
            }
        }
    }

    /// A child span for a call to `upstream` at `host`, its context written into `headers` as
    /// `traceparent` (and `tracestate`), replacing the client's.
    pub(crate) fn upstream(
        &self,
        upstream: &str,
        host: &str,
        method: &http::Method,
        headers: &mut HeaderMap,
    ) -> TraceCx {
        let (name, mut attributes) = method_attributes(method);
        attributes.push(KeyValue::new("server.address", host.to_owned()));
        attributes.push(KeyValue::new("pagegate.upstream", upstream.to_owned()));
        let child = self.child(name, attributes);
        headers.remove("traceparent");
        headers.remove("tracestate");
        TraceContextPropagator::new().inject_context(&child.cx, &mut HeaderInjector(headers));
        // The propagator writes `tracestate` even when it is empty; no header says the same.
        if headers.get("tracestate").is_some_and(|v| v.is_empty()) {
            headers.remove("tracestate");
        }
        child
    }

    /// A child span for the statements of a page or an export (`export`) of `table`.
    pub(crate) fn database(&self, table: &str, export: bool) -> TraceCx {
        let name = if export {
            format!("SELECT {table} (export)")
        } else {
            format!("SELECT {table}")
        };
        self.child(
            name,
            vec![
                KeyValue::new("db.system.name", "postgresql"),
                KeyValue::new("db.operation.name", "SELECT"),
                KeyValue::new("db.collection.name", table.to_owned()),
            ],
        )
    }

    /// Records a failure on this span.
    pub(crate) fn failed(&self, cause: impl Into<std::borrow::Cow<'static, str>>) {
        self.cx.span().set_status(Status::error(cause));
    }

    /// Records the status of the answer this span waited for.
    pub(crate) fn status(&self, status: http::StatusCode) {
        self.cx.span().set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status.as_u16()),
        ));
    }

    fn child(
        &self,
        name: impl Into<std::borrow::Cow<'static, str>>,
        attributes: Vec<KeyValue>,
    ) -> TraceCx {
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &self.cx);
        TraceCx {
            cx: self.cx.with_span(span),
            tracer: self.tracer.clone(),
        }
    }
}

/// opentelemetry-http's hyper client, run on the Tokio runtime: the batch processor calls it
/// from its own thread, where hyper finds no runtime.
#[derive(Debug)]
struct OnRuntime {
    client: opentelemetry_http::hyper::HyperClient,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let client = self.client.clone();
        self.runtime
            .spawn(async move { client.send_bytes(request).await })
            .await?
    }
}
/// What OpenTelemetry's HTTP conventions call a method outside the known set.
const OTHER_METHOD: &str = "_OTHER";

/// A span's name and method attributes as the conventions write them: `GET` and
/// `http.request.method: GET`; for a method outside the known set, `HTTP`, `_OTHER` and the
/// method sent as `http.request.method_original`.
fn method_attributes(method: &http::Method) -> (&'static str, Vec<KeyValue>) {
    let known = known_method(method);
    let mut attributes = Vec::with_capacity(4);
    attributes.push(KeyValue::new("http.request.method", known));
    if known == OTHER_METHOD {
        attributes.push(KeyValue::new(
            "http.request.method_original",
            method.to_string(),
        ));
        return ("HTTP", attributes);
    }
    (known, attributes)
}

/// A span's method as the conventions name it: a known method, else [`OTHER_METHOD`]. A client
/// sending `FOO1`, `FOO2`, … would otherwise choose span names, whose number a trace backend
/// expects to be small.
fn known_method(method: &http::Method) -> &'static str {
    use http::Method as M;
    match *method {
        M::GET => "GET",
        M::HEAD => "HEAD",
        M::POST => "POST",
        M::PUT => "PUT",
        M::DELETE => "DELETE",
        M::PATCH => "PATCH",
        M::OPTIONS => "OPTIONS",
        M::CONNECT => "CONNECT",
        M::TRACE => "TRACE",
        _ => OTHER_METHOD,
    }
}
