//! The access log: one event per request, written when the response body ends (or is dropped),
//! with what the client actually received — bytes sent, time to first and last byte, outcome —
//! and a request id that travels to the backend and back to the client.

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method, StatusCode, Uri};
use http_body::Body as HttpBody;
use pin_project_lite::pin_project;
use prometheus_client::metrics::counter::Counter;
use tokio::time::Instant;
use tower::{Layer, Service};

use super::{RouteMetrics, TraceCx, Traces};
use crate::client_addr::ClientAddr;
use crate::{Request, Response};

/// The request id header: kept when the client (or a proxy in front) sent a sane one, generated
/// otherwise; forwarded to the backend and returned to the client.
pub const REQUEST_ID: &str = "x-request-id";

/// [`REQUEST_ID`] as a header name: inserting by a `&str` name that is not one of the standard
/// headers allocates a copy of it on every call.
const REQUEST_ID_NAME: HeaderName = HeaderName::from_static(REQUEST_ID);

/// Longest request id kept from a request; a longer one is replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// Gives every request an id, counts every answer by route and status, and logs each request
/// once its response body ends. Outermost, so it sees pagegate's own answers too.
#[derive(Debug, Clone)]
pub struct AccessLogLayer {
    enabled: bool,
    traces: Option<Traces>,
    abandoned: Option<Counter>,
}

impl AccessLogLayer {
    /// A layer that writes log events when `enabled` (it always counts and sets request ids).
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            traces: None,
            abandoned: None,
        }
    }

    /// Also counts, in `abandoned`, requests whose client left before an answer's head: the
    /// route's counters never see them.
    #[must_use]
    pub(crate) fn counting(self, abandoned: Counter) -> Self {
        let abandoned = Some(abandoned);
        Self { abandoned, ..self }
    }

    /// Also starts each request's server span with `traces`, when set.
    #[must_use]
    pub fn traced(self, traces: Option<Traces>) -> Self {
        Self { traces, ..self }
    }
}

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AccessLog {
            inner,
            enabled: self.enabled,
            traces: self.traces.clone(),
            abandoned: self.abandoned.clone(),
        }
    }
}

/// The service of [`AccessLogLayer`].
#[derive(Debug, Clone)]
pub struct AccessLog<S> {
    inner: S,
    enabled: bool,
    traces: Option<Traces>,
    abandoned: Option<Counter>,
}

impl<S> Service<Request> for AccessLog<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = http::Response<LoggedBody>;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let start = Instant::now();
        let client = req.extensions().get::<ClientAddr>();
        // A client's own id is kept only from a trusted proxy (or with no peer at all, in
        // process); anyone else gets a fresh one.
        let keep = client.is_none_or(ClientAddr::trusted);
        let ip = client.map(ClientAddr::ip);
        let request_id = request_id(req.headers_mut(), keep);
        // Tracing on: the server span, a parent for the layers below; its own parent believed
        // from the same peers as the request id.
        let span = self.traces.as_ref().map(|traces| {
            let span = traces.server_span(req.method(), req.uri().path(), req.headers(), keep);
            req.extensions_mut().insert(span.clone());
            span
        });
        let request = self.enabled.then(|| RequestPart {
            method: req.method().clone(),
            uri: req.uri().clone(),
            client: ip,
            trace: span.as_ref().map(TraceCx::ids),
        });
        ResponseFuture {
            inner: self.inner.call(req),
            start,
            request_id: Some(request_id),
            request,
            span,
            abandoned: self.abandoned.clone(),
        }
    }
}

/// What the log keeps of the request (only when logging).
#[derive(Debug)]
struct RequestPart {
    method: Method,
    uri: Uri,
    client: Option<IpAddr>,
    /// The trace and span ids, when tracing.
    trace: Option<(String, String)>,
}

pin_project! {
    /// The future of [`AccessLog`]: a named future, no box. Dropped before the response head
    /// (the client went away first), it still logs the request.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        start: Instant,
        request_id: Option<HeaderValue>,
        request: Option<RequestPart>,
        span: Option<TraceCx>,
        abandoned: Option<Counter>,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // The request id goes with the head: still here, the client left first.
            if this.request_id.is_some()
                && let Some(abandoned) = this.abandoned.as_ref()
            {
                abandoned.inc();
            }
            if let Some(span) = this.span.take() {
                span.answered("-", None, Outcome::ClientClosed.as_str());
            }
            if let Some(request) = this.request.take() {
                Entry {
                    request,
                    start: *this.start,
                    first_byte: None,
                    status: None,
                    route: None,
                    outcome: Outcome::ClientClosed,
                    request_id: this.request_id.take(),
                    bytes: 0,
                    expected: None,
                }
                .write(Outcome::ClientClosed);
            }
        }
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<http::Response<LoggedBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(mut response) = std::task::ready!(this.inner.poll(cx));
        let status = response.status();
        let route = response.extensions_mut().remove::<Arc<RouteMetrics>>();
        if let Some(route) = &route {
            route.answered(status);
        }
        let outcome = response
            .extensions()
            .get::<Outcome>()
            .copied()
            .unwrap_or(Outcome::Passed);
        let request_id = this.request_id.take();
        if let Some(id) = &request_id {
            response.headers_mut().insert(REQUEST_ID_NAME, id.clone());
        }
        let expected = response.body().size_hint().exact();
        let measure = route.clone().map(|route| Measure {
            route,
            status,
            start: *this.start,
            bytes: 0,
        });
        let entry = this.request.take().map(|request| {
            Box::new(Entry {
                request,
                start: *this.start,
                first_byte: Some(this.start.elapsed()),
                status: Some(status),
                route,
                outcome,
                request_id,
                bytes: 0,
                expected,
            })
        });
        let span = this.span.take().map(|cx| {
            Box::new(SpanEnd {
                cx,
                status,
                route: entry
                    .as_ref()
                    .and_then(|e| e.route.clone())
                    .or_else(|| measure.as_ref().map(|m| Arc::clone(&m.route))),
                outcome,
            })
        });
        Poll::Ready(Ok(
            response.map(|inner| LoggedBody::new(inner, measure, entry, span))
        ))
    }
}

/// One request's log entry, filled as its body is sent.
#[derive(Debug)]
struct Entry {
    request: RequestPart,
    start: Instant,
    /// `None` when the client left before the response head.
    first_byte: Option<Duration>,
    status: Option<StatusCode>,
    route: Option<Arc<RouteMetrics>>,
    outcome: Outcome,
    request_id: Option<HeaderValue>,
    bytes: u64,
    /// The body's exact length when known: a body dropped after that many bytes was sent
    /// whole, even if it never said it had ended.
    expected: Option<u64>,
}

impl Entry {
    fn write(&self, outcome: Outcome) {
        let request = &self.request;
        let client = request.client;
        let path = super::logged_path(request.uri.path());
        tracing::info!(
            target: "pagegate::access",
            request_id = self.request_id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("-"),
            method = %request.method,
            path = path.as_ref(),
            path_len = request.uri.path().len(),
            route = self.route.as_ref().map_or("-", |r| r.name()),
            status = self.status.map(|s| s.as_u16()),
            outcome = outcome.as_str(),
            client = client.map(tracing::field::display),
            bytes = self.bytes,
            first_byte_us = self.first_byte.map(|t| u64::try_from(t.as_micros()).unwrap_or(u64::MAX)),
            last_byte_us = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX),
            trace_id = request.trace.as_ref().map(|t| t.0.as_str()),
            span_id = request.trace.as_ref().map(|t| t.1.as_str()),
            "request"
        );
    }

    /// Whether a body dropped unread still counts as sent whole: HEAD answers and statuses
    /// without a body never have theirs read.
    fn bodiless(&self) -> bool {
        self.request.method == Method::HEAD
            || self.status.is_some_and(|s| {
                s == StatusCode::NO_CONTENT || s == StatusCode::NOT_MODIFIED || s.is_informational()
            })
    }
}

mod body;
mod outcome;
mod request_id;

use body::LoggedBody;
use body::{Measure, SpanEnd};
pub use outcome::Outcome;
use request_id::request_id;

#[cfg(test)]
mod tests;
