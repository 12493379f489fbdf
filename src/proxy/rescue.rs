//! The one rescue point: every error a route's stack returns is answered here, by the one
//! answer table of [`answer`] ([`ProxyError::answer`]), and nowhere else.
//!
//! Leaf modules return their own thiserror enums ([`crate::route_table::NoRoute`],
//! [`crate::list::pagination::PaginationError`], [`crate::cursor::CursorError`],
//! [`crate::upstream::UpstreamError`], [`crate::list::guard::GuardError`],
//! [`crate::table::PgError`], …) boxed as [`crate::BoxError`]; [`RescueLayer`], the outermost
//! layer of every route, sorts them into a [`ProxyError`]. Responses are RFC 9457
//! `application/problem+json` documents whose `detail` is the error's own message, which is
//! written for the client; internal detail (socket errors, backend bodies) is logged, never
//! sent. In report-only mode the same table describes what would have been refused, in
//! `pagegate-would-refuse`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::HeaderValue;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::limit::LimitsWouldRefuse;
use crate::list::pagination::PlanWouldRefuse;
use crate::telemetry::RouteMetrics;
use crate::{BoxError, Request, Response};

mod answer;

pub(crate) use answer::{PROBLEM_PREFIX, ProxyError};

/// The response header that says, in report-only mode, what would have been refused and how:
/// `429 rate_per_client`, `400 limit-too-large`; one value per refusal.
const WOULD_REFUSE: &str = "pagegate-would-refuse";

/// Turns the errors of one route's stack into problem responses (see the module docs), and
/// tags every answer with the route's metric handles for the access log.
#[derive(Debug, Clone)]
pub(crate) struct RescueLayer {
    route: Arc<RouteMetrics>,
}

impl RescueLayer {
    /// The rescue of the route whose handles are `route`.
    pub(crate) fn new(route: Arc<RouteMetrics>) -> Self {
        Self { route }
    }
}

impl<S> Layer<S> for RescueLayer {
    type Service = Rescue<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Rescue {
            inner,
            route: Arc::clone(&self.route),
        }
    }
}

/// The service of [`RescueLayer`].
#[derive(Debug, Clone)]
pub(crate) struct Rescue<S> {
    inner: S,
    route: Arc<RouteMetrics>,
}

impl<S> Service<Request> for Rescue<S>
where
    S: Service<Request, Response = Response, Error = BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = RescueFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Every service below is always ready; an error here would be a bug, answered per call.
        let _ = ready!(self.inner.poll_ready(cx));
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        RescueFuture {
            inner: self.inner.call(req),
            route: Some(Arc::clone(&self.route)),
        }
    }
}

pin_project! {
    /// The future of [`Rescue`].
    pub struct RescueFuture<F> {
        #[pin]
        inner: F,
        route: Option<Arc<RouteMetrics>>,
    }
}

impl<F> Future for RescueFuture<F>
where
    F: Future<Output = Result<Response, BoxError>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = match ready!(this.inner.poll(cx)) {
            Ok(mut response) => {
                describe_reported(&mut response);
                response
            }
            Err(error) => {
                let error = ProxyError::from_boxed(error);
                let answer = error.answer();
                if let (Some(reason), Some(route)) = (answer.protection, this.route.as_ref()) {
                    route.protection(reason);
                }
                if let (Some(cursor), Some(route)) = (error.cursor(), this.route.as_ref()) {
                    route.cursor_failed(cursor.reason());
                }
                let route = this.route.as_ref().map_or("-", |r| r.name());
                match answer.status {
                    s if s.is_server_error() => tracing::warn!(%route, %error, "request failed"),
                    _ => tracing::debug!(%route, %error, "request refused"),
                }
                error.into_response()
            }
        };
        if let Some(route) = this.route.take() {
            response.extensions_mut().insert(route);
        }
        Poll::Ready(Ok(response))
    }
}

/// Report-only mode: each refusal a layer would have answered, written as the answer table
/// gives its status, with the problem type (pagination) or the limit's name (limits).
fn describe_reported(response: &mut Response) {
    let mut values = Vec::new();
    if let Some(PlanWouldRefuse(error)) = response.extensions_mut().remove() {
        let answer = ProxyError::from(error).answer();
        let kind = answer.kind.trim_start_matches(PROBLEM_PREFIX);
        values.push(format!("{} {kind}", answer.status.as_u16()));
    }
    if let Some(LimitsWouldRefuse(errors)) = response.extensions_mut().remove() {
        let described: Vec<String> = errors
            .into_iter()
            .map(|error| {
                let name = error.limit();
                format!(
                    "{} {name}",
                    ProxyError::from(error).answer().status.as_u16()
                )
            })
            .collect();
        values.push(described.join(", "));
    }
    for value in values {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().append(WOULD_REFUSE, value);
        }
    }
}

#[cfg(test)]
mod tests;
