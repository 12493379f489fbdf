//! The route terminal that relays a request to its upstream ([`Forward`]): the URI and headers
//! it sends, the route's timeouts, bodies streamed both ways, and upgrades handed to a tunnel.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::Body as _;
use http_body_util::BodyExt;
use pin_project_lite::pin_project;
use prometheus_client::metrics::counter::Counter;
use tokio::time::Instant;
use tokio::time::Sleep;
use tower::Service;

use crate::body::{BodyEnd, IdleTimeout, SignalEnd};
use crate::client_addr::{ClientAddr, TunnelHold};
use crate::telemetry::TraceCx;
use crate::upstream::UpstreamClient;
use crate::upstream::config::TimeoutOverrides;
use crate::upstream::error::{cause, is_timeout, method_error, request_body_error};
use crate::upstream::pool::{Answer, ResponseFuture, SendError};
use crate::{BoxError, Request, Response, UpstreamError};

/// The innermost service of an HTTP route: relays requests to the route's upstream, with the
/// route's timeouts.
#[derive(Debug, Clone)]
pub(crate) struct Forward {
    upstream: Arc<UpstreamClient>,
    response_timeout: Duration,
    idle_timeout: Duration,
    /// The route's `pagegate_request_bytes_total`.
    request_bytes: Counter,
    /// The headers the configuration's limits and identities read: kept as they read them.
    decided: Arc<[http::HeaderName]>,
    /// `trace_context: anyone`: an untrusted client's trace context passes (its W3C one only
    /// when untraced: traced, pagegate's own span replaces it).
    trace_context_from_anyone: bool,
    /// The route lets GET and HEAD carry a body (`allow_read_body`).
    read_body: bool,
}

// === impl Forward ===

impl Forward {
    /// Relays to `upstream`; `overrides` replace its timeouts for this route, whose request
    /// body bytes are counted in `request_bytes`; `decided` names the headers the
    /// configuration's limits and identities read, and whether any client's trace context
    /// passes (`trace_context: anyone`); `read_body` says the route lets GET and HEAD carry
    /// a body.
    pub(crate) fn new(
        upstream: Arc<UpstreamClient>,
        overrides: TimeoutOverrides,
        request_bytes: Counter,
        (decided, trace_context_from_anyone): (Arc<[http::HeaderName]>, bool),
        read_body: bool,
    ) -> Self {
        let config = &upstream.config;
        Self {
            response_timeout: overrides.response.unwrap_or(config.response_timeout),
            idle_timeout: overrides.idle.unwrap_or(config.idle_timeout),
            upstream,
            request_bytes,
            decided,
            trace_context_from_anyone,
            read_body,
        }
    }

    /// Turns the client's request into the upstream's: URI, hop-by-hop and override headers,
    /// forwarding headers, `Host`, and a body that fails when it stalls. Returns the body's end
    /// signal when the body is still to come (the response timeout starts when it ends).
    fn prepare(&self, req: Request, traced: bool) -> Result<Prepared, BoxError> {
        let upstream = &*self.upstream;
        let config = &upstream.config;
        let (mut parts, body) = req.into_parts();
        let client = parts.extensions.remove::<ClientAddr>();
        // An upgrade (WebSocket) is relayed: its hop-by-hop headers are put back below, and
        // the client's side of the connection waits for the upstream's answer.
        let upgrade = super::tunnel::requested(&parts.headers).and_then(|protocol| {
            let on = parts.extensions.remove::<hyper::upgrade::OnUpgrade>()?;
            let route = parts.extensions.remove::<TunnelHold>().map(|hold| hold.0);
            Some(super::tunnel::Upgrade {
                protocol,
                client: on,
                held: client
                    .as_ref()
                    .and_then(ClientAddr::slot)
                    .into_iter()
                    .chain(route)
                    .collect(),
            })
        });
        let host = parts
            .headers
            .get(http::header::HOST)
            .cloned()
            .or_else(|| parts.uri.authority().and_then(|a| a.as_str().parse().ok()));
        parts.uri = config
            .uri_for(&parts.uri)
            .ok_or_else(|| self.unavailable())?;
        super::headers::remove_hop_by_hop(&mut parts.headers, &self.decided);
        super::headers::remove_method_overrides(&mut parts.headers, &self.decided);
        // What the client says of itself (forwarding headers, trace context) is kept only
        // from a trusted proxy; no client (not over TCP): kept.
        let trusted = client.as_ref().is_none_or(ClientAddr::trusted);
        // A client's trace context would reach the backend as it wrote it: one that samples by
        // its parent would record whatever a client flags, under ids it picked. Traced,
        // pagegate's own span has replaced the W3C one already.
        if !self.trace_context_from_anyone && !trusted {
            super::headers::remove_trace_context(&mut parts.headers, &self.decided, !traced);
        }
        super::headers::set_forwarding(
            &mut parts.headers,
            client.as_ref(),
            host.as_ref(),
            &config.host,
            upstream.authority.as_ref(),
            (trusted, &self.decided),
        );
        if let Some(upgrade) = &upgrade {
            super::tunnel::restore(&mut parts.headers, upgrade.protocol.clone());
        }
        super::headers::to_http1(&mut parts, &body.size_hint(), self.read_body);
        // A body that has already ended (most GETs) cannot stall: no timer, no signal.
        if body.is_end_stream() {
            return Ok((http::Request::from_parts(parts, body), None, upgrade));
        }
        let end = Arc::new(BodyEnd::default());
        let signal = SignalEnd::new(body, Arc::clone(&end), self.request_bytes.clone());
        let body = IdleTimeout::new(signal, self.idle_timeout);
        Ok((
            http::Request::from_parts(parts, body.boxed()),
            Some(end),
            upgrade,
        ))
    }

    /// The client's response from the upstream's, or why there is none.
    fn answer(
        &self,
        result: Result<Result<Answer, SendError>, ()>,
        upgrade: Option<super::tunnel::Upgrade>,
        sent_at: Instant,
    ) -> Result<Response, BoxError> {
        let config = &self.upstream.config;
        let metrics = &self.upstream.metrics;
        let response = match result {
            Err(_) => {
                metrics.failed("response_timeout");
                return Err(self.timeout("answer", self.response_timeout));
            }
            Ok(Err(e)) => {
                if e.is_connect() && is_timeout(&e) {
                    metrics.failed("connect_timeout");
                    return Err(self.timeout("accept a connection", config.connect_timeout));
                }
                // A form body named a `_method` that moves it (methods::form): refused.
                if let Some(error) = method_error(&e) {
                    return Err(error.into());
                }
                // The client's own body failed: its fault, not the upstream's.
                if let Some(error) = request_body_error(&e) {
                    tracing::debug!(upstream = %config.name, %error, "request body failed");
                    return Err(error.into());
                }
                let cause = cause(&e);
                metrics.failed(cause);
                let address = config.origin.authority().map_or("", |a| a.as_str());
                tracing::warn!(upstream = %config.name, address, cause, error = %e, source = ?std::error::Error::source(&e), "upstream request failed");
                return Err(self.unavailable());
            }
            Ok(Ok(mut response)) if response.status() == http::StatusCode::SWITCHING_PROTOCOLS => {
                let agreed = response
                    .headers()
                    .get(http::header::UPGRADE)
                    .is_some_and(super::tunnel::is_websocket);
                let Some(upgrade) = upgrade.filter(|_| agreed) else {
                    metrics.failed("unasked_upgrade");
                    tracing::warn!(upstream = %config.name, "upstream answered 101 to a request that did not ask for it (or with another protocol)");
                    return Err(UpstreamError::UnaskedUpgrade {
                        upstream: config.name.clone(),
                    }
                    .into());
                };
                let protocol = response
                    .headers()
                    .get(http::header::UPGRADE)
                    .cloned()
                    .unwrap_or_else(|| upgrade.protocol.clone());
                let upstream_side = hyper::upgrade::on(&mut response);
                // Counted in `pagegate_open_tunnels` until it ends.
                let open = self.upstream.metrics.tunnel();
                tokio::spawn(super::tunnel::run(
                    upgrade,
                    upstream_side,
                    self.idle_timeout,
                    open,
                ));
                let (mut parts, _) = response.into_parts();
                super::headers::remove_hop_by_hop(&mut parts.headers, &[]);
                super::tunnel::restore(&mut parts.headers, protocol);
                return Ok(http::Response::from_parts(
                    parts,
                    crate::body::full(Bytes::new()),
                ));
            }
            Ok(Ok(response)) => response,
        };
        metrics.first_byte(sent_at.elapsed());
        let (mut parts, body) = response.into_parts();
        super::headers::clean_response(&mut parts.headers);
        if let Some(prefix) = &self.upstream.redirect_prefix {
            super::headers::rewrite_redirects(&mut parts.headers, prefix);
        }
        let body = IdleTimeout::new(body, self.idle_timeout).boxed();
        Ok(http::Response::from_parts(parts, body))
    }

    fn unavailable(&self) -> BoxError {
        UpstreamError::Unavailable {
            upstream: self.upstream.config.name.clone(),
        }
        .into()
    }

    fn timeout(&self, stage: &'static str, after: Duration) -> BoxError {
        UpstreamError::Timeout {
            upstream: self.upstream.config.name.clone(),
            stage,
            after,
        }
        .into()
    }
}

impl Service<Request> for Forward {
    type Response = Response;
    type Error = BoxError;
    type Future = ForwardFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        // Tracing on: the upstream call's span, whose context the upstream receives. (A dot
        // segment, which would leave a base path, was refused by the router.)
        let traced = req.extensions().get::<TraceCx>().cloned();
        let span = traced.map(|cx| {
            let config = &self.upstream.config;
            let host = config.origin.host().unwrap_or("");
            let method = req.method().clone();
            cx.upstream(&config.name, host, &method, req.headers_mut())
        });
        let (inner, error, body_end, upgrade) = match self.prepare(req, span.is_some()) {
            Ok((request, body_end, upgrade)) => {
                let sent = self.upstream.pool.request(request, body_end.clone());
                (Some(sent), None, body_end, upgrade)
            }
            Err(error) => (None, Some(error), None, None),
        };
        // One clock read for both.
        let sent_at = Instant::now();
        ForwardFuture {
            inner,
            sent_at,
            // Not registered with the timer until first polled; reset when an upload ends.
            deadline: tokio::time::sleep_until(sent_at + self.response_timeout),
            body_end,
            upload_progress: None,
            upgrade,
            error,
            forward: self.clone(),
            span,
        }
    }
}

pin_project! {
    /// The future of [`Forward`]: the upstream exchange under the response timeout, which
    /// counts from the end of the request body (an upload may take longer than the backend
    /// takes to answer). Named, not boxed: the request is prepared in `call`.
    pub struct ForwardFuture {
        #[pin]
        inner: Option<ResponseFuture>,
        // When the request went upstream, for the time to its response head.
        sent_at: Instant,
        #[pin]
        deadline: Sleep,
        // The request body's end, while it is still being sent.
        body_end: Option<Arc<BodyEnd>>,
        // The upload's progress when the deadline was last pushed back.
        upload_progress: Option<u64>,
        upgrade: Option<super::tunnel::Upgrade>,
        error: Option<BoxError>,
        forward: Forward,
        // The upstream call's span, when tracing; it ends with the response head.
        span: Option<TraceCx>,
    }
}

impl Future for ForwardFuture {
    type Output = Result<Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            return Poll::Ready(Err(this
                .error
                .take()
                .unwrap_or_else(|| "polled after completion".into())));
        };
        if let Poll::Ready(result) = inner.poll(cx) {
            let upgrade = this.upgrade.take();
            let answer = this.forward.answer(Ok(result), upgrade, *this.sent_at);
            return Poll::Ready(end_span(this.span.take(), answer));
        }
        if let Some(end) = this.body_end.as_ref() {
            if !end.poll_ended(cx) {
                // Still uploading. A client that stalls is the body's idle timeout; an
                // upstream that stops reading the body (and never answers) is this one: no
                // progress for `idle_timeout`.
                let idle = this.forward.idle_timeout;
                let progress = end.progress();
                // Waiting on the client is the body's own idle timeout's business (408).
                if *this.upload_progress != Some(progress) || end.waiting_on_sender() {
                    *this.upload_progress = Some(progress);
                    this.deadline
                        .as_mut()
                        .reset(tokio::time::Instant::now() + idle);
                }
                return match this.deadline.poll(cx) {
                    Poll::Ready(()) => {
                        let error = this.forward.timeout("read the request body", idle);
                        Poll::Ready(end_span(this.span.take(), Err(error)))
                    }
                    Poll::Pending => Poll::Pending,
                };
            }
            *this.body_end = None;
            let deadline = tokio::time::Instant::now() + this.forward.response_timeout;
            this.deadline.as_mut().reset(deadline);
        }
        match this.deadline.poll(cx) {
            Poll::Ready(()) => {
                let answer = this.forward.answer(Err(()), None, *this.sent_at);
                Poll::Ready(end_span(this.span.take(), answer))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Records how the upstream call ended on its span, which then ends.
fn end_span(
    span: Option<TraceCx>,
    answer: Result<Response, BoxError>,
) -> Result<Response, BoxError> {
    if let Some(span) = span {
        match &answer {
            Ok(response) => span.status(response.status()),
            Err(error) => span.failed(error.to_string()),
        }
    }
    answer
}

/// A request ready for the upstream, its body's end signal (uploads) and its upgrade.
pub(super) type Prepared = (
    Request,
    Option<Arc<BodyEnd>>,
    Option<super::tunnel::Upgrade>,
);
