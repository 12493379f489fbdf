//! The one rescue point: every error a route's stack returns becomes its status and problem
//! document here, and nowhere else.
//!
//! Leaf modules return their own thiserror enums ([`NoRoute`], [`PaginationError`],
//! [`CursorError`], [`UpstreamError`], [`GuardError`], [`HoldError`]) boxed as
//! [`crate::BoxError`]; [`RescueLayer`], the outermost layer of every route, downcasts them into a
//! [`ProxyError`], whose [`ProxyError::status`] is the only status mapping in pagegate.
//! Responses are RFC 9457 `application/problem+json` documents whose `detail` is the error's own
//! message, which is written for the client; internal detail (socket errors, backend bodies) is
//! logged, never sent.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{HeaderValue, StatusCode, header};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::body::RequestBodyError;
use crate::cursor::CursorError;
use crate::limit::LimitError;
use crate::list::guard::{GuardError, HoldError};
use crate::list::pagination::{PaginationError, PlanError};
use crate::methods::MethodError;
use crate::problem::Problem;
use crate::route_table::{NoRoute, NulPath};
use crate::table::PgError;
use crate::telemetry::{Outcome, RouteMetrics};
use crate::upstream::UpstreamError;
use crate::{BoxError, Request, Response};

/// Any reason pagegate answers a request itself instead of relaying the backend's answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    /// No route matches and the `default` policy is `deny`.
    #[error(transparent)]
    NoRoute(#[from] NoRoute),
    /// The path holds a NUL byte.
    #[error(transparent)]
    Path(#[from] NulPath),
    /// The request's pagination parameters break the route's policy.
    #[error(transparent)]
    Pagination(#[from] PaginationError),
    /// The `cursor` parameter does not verify.
    #[error(transparent)]
    Cursor(#[from] CursorError),
    /// The backend could not be reached or answered too slowly.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The backend's list response could not be relayed safely.
    #[error(transparent)]
    Guard(#[from] GuardError),
    /// Held list pages already use `max_held_bytes`.
    #[error(transparent)]
    Overloaded(#[from] HoldError),
    /// The client's request body stalled or is malformed.
    #[error(transparent)]
    RequestBody(#[from] RequestBodyError),
    /// The method could be read differently by the backend, or is CONNECT.
    #[error(transparent)]
    Method(#[from] MethodError),
    /// A rate or concurrency limit of the route.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// A table route's request or its database.
    #[error(transparent)]
    Table(#[from] PgError),
    /// Every `max_connections` slot stayed busy while this client's connection waited.
    #[error("pagegate is serving as many connections as it may; retry shortly")]
    ConnectionsFull,
    /// A bug in pagegate; details are in the log.
    #[error("pagegate could not process this request")]
    Internal,
}

// === impl ProxyError ===

impl ProxyError {
    /// Sorts a boxed error from a route's stack. An error of no known type is a bug: it is
    /// logged and answered 500 without its text.
    pub(crate) fn from_boxed(error: BoxError) -> Self {
        let error = match error.downcast::<PlanError>() {
            Ok(plan) => {
                return match *plan {
                    PlanError::Pagination(e) => e.into(),
                    PlanError::Cursor(e) => e.into(),
                };
            }
            Err(error) => error,
        };
        macro_rules! sort {
            ($error:ident: $($leaf:ty),*) => {
                $(let $error = match $error.downcast::<$leaf>() {
                    Ok(leaf) => return (*leaf).into(),
                    Err(other) => other,
                };)*
            };
        }
        sort!(error: NoRoute, NulPath, PaginationError, CursorError, UpstreamError, GuardError, HoldError, MethodError, RequestBodyError, LimitError, PgError);
        tracing::error!(%error, "unexpected error in a route's stack");
        Self::Internal
    }

    /// The status this error is answered with. This is the only status mapping in pagegate.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::NoRoute(_) => StatusCode::NOT_FOUND,
            Self::Path(_) => StatusCode::BAD_REQUEST,
            Self::Method(MethodError::Connect) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Method(MethodError::FormTooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Method(_) => StatusCode::BAD_REQUEST,
            Self::RequestBody(RequestBodyError::Stalled(_)) => StatusCode::REQUEST_TIMEOUT,
            Self::RequestBody(RequestBodyError::Malformed) => StatusCode::BAD_REQUEST,
            Self::Pagination(_) | Self::Cursor(_) => StatusCode::BAD_REQUEST,
            Self::Upstream(UpstreamError::Timeout { .. }) => StatusCode::GATEWAY_TIMEOUT,
            Self::Upstream(_) | Self::Guard(_) => StatusCode::BAD_GATEWAY,
            Self::Overloaded(_) | Self::ConnectionsFull => StatusCode::SERVICE_UNAVAILABLE,
            Self::Limit(e) if e.route_busy() => StatusCode::SERVICE_UNAVAILABLE,
            Self::Limit(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Table(e) => e.status(),
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `pagegate_protections_total` reason, for refusals that protect pagegate or the
    /// backend (not for ordinary bad parameters or upstream failures).
    pub(crate) fn protection(&self) -> Option<&'static str> {
        Some(match self {
            Self::Method(MethodError::Connect) => "connect",
            Self::Method(MethodError::NonCanonical { .. }) => "method_case",
            Self::Method(MethodError::Override { .. }) => "method_override",
            Self::Method(MethodError::BodyOnRead { .. }) => "body_on_read",
            Self::Method(MethodError::UpgradeOnList { .. }) => "upgrade_on_list",
            Self::Method(MethodError::FormTooLarge { .. }) => "form_too_large",
            Self::RequestBody(RequestBodyError::Stalled(_)) => "request_body_stalled",
            Self::RequestBody(RequestBodyError::Malformed) => "request_body_malformed",
            Self::Overloaded(HoldError::Busy) => "held_bytes",
            Self::Overloaded(HoldError::ClientShare { .. }) => "held_bytes_per_client",
            Self::Upstream(UpstreamError::UnaskedUpgrade { .. }) => "unasked_upgrade",
            Self::Guard(GuardError::Unfinished) => "unfinished_list",
            _ => return None,
        })
    }

    /// What the access log reports.
    pub(crate) fn outcome(&self) -> Outcome {
        match self {
            Self::NoRoute(_)
            | Self::Path(_)
            | Self::Pagination(_)
            | Self::Cursor(_)
            | Self::Method(_) => Outcome::Refused,
            Self::Upstream(_) | Self::Guard(_) => Outcome::UpstreamError,
            Self::RequestBody(RequestBodyError::Stalled(_)) => Outcome::ClientStalled,
            Self::RequestBody(RequestBodyError::Malformed) => Outcome::Refused,
            Self::Overloaded(_) | Self::ConnectionsFull => Outcome::Overloaded,
            Self::Limit(_) => Outcome::Limited,
            Self::Table(e) if e.status().is_client_error() => Outcome::Refused,
            Self::Table(_) => Outcome::UpstreamError,
            Self::Internal => Outcome::Internal,
        }
    }

    /// A stable, documented problem type (see README "Errors").
    pub(crate) fn problem_type(&self) -> &'static str {
        match self {
            Self::NoRoute(_) => "urn:pagegate:problem:no-route",
            Self::Path(_) => "urn:pagegate:problem:invalid-path",
            Self::Method(MethodError::Connect) => "urn:pagegate:problem:method-not-allowed",
            Self::Method(MethodError::FormTooLarge { .. }) => "urn:pagegate:problem:form-too-large",
            Self::Method(_) => "urn:pagegate:problem:ambiguous-method",
            Self::RequestBody(RequestBodyError::Stalled(_)) => {
                "urn:pagegate:problem:request-body-stalled"
            }
            Self::RequestBody(RequestBodyError::Malformed) => {
                "urn:pagegate:problem:malformed-request-body"
            }
            Self::Pagination(e) => e.problem_type(),
            Self::Cursor(_) => "urn:pagegate:problem:invalid-cursor",
            Self::Upstream(UpstreamError::Timeout { .. }) => {
                "urn:pagegate:problem:upstream-timeout"
            }
            Self::Upstream(_) => "urn:pagegate:problem:upstream-unavailable",
            Self::Guard(_) => "urn:pagegate:problem:bad-upstream-response",
            Self::Overloaded(_) | Self::ConnectionsFull => "urn:pagegate:problem:overloaded",
            Self::Table(e) => e.problem_type(),
            Self::Limit(e) => match e.refusal {
                crate::limit::Refusal::Rate(_) => "urn:pagegate:problem:rate-limited",
                crate::limit::Refusal::Concurrency(_) => "urn:pagegate:problem:concurrency-limited",
                crate::limit::Refusal::Unavailable => "urn:pagegate:problem:limits-unavailable",
            },
            Self::Internal => "urn:pagegate:problem:internal",
        }
    }

    /// The problem document for this error.
    pub(crate) fn to_problem(&self) -> Problem {
        let status = self.status();
        let mut problem = Problem::new(status, self.problem_type(), self.to_string());
        if let Self::Pagination(e) = self {
            e.extend(&mut problem);
        }
        problem
    }

    /// The response a client receives for this error.
    pub(crate) fn into_response(self) -> Response {
        let mut response = self.to_problem().into_response();
        if matches!(self, Self::Overloaded(_) | Self::ConnectionsFull) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Self::Limit(limit) = &self {
            let headers = response.headers_mut();
            headers.insert(header::RETRY_AFTER, HeaderValue::from(limit.retry_after()));
            if let Some(fields) = &limit.fields {
                headers.insert("ratelimit-policy", fields.policy.clone());
                headers.insert("ratelimit", fields.state.clone());
            }
        }
        if let Some(after) = match &self {
            Self::Table(e) => e.retry_after(),
            _ => None,
        } {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static(after));
        }
        if let Self::Table(PgError::Method(_)) = &self {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        if matches!(self, Self::Method(MethodError::Connect)) {
            // RFC 9110 §15.5.6: a 405 lists what is allowed.
            response.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
            );
        }
        if matches!(self, Self::ConnectionsFull) {
            // The connection closes after this answer (HTTP/2 gets GOAWAY).
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response.extensions_mut().insert(self.outcome());
        response
    }
}

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
            Ok(response) => response,
            Err(error) => {
                let error = ProxyError::from_boxed(error);
                if let (Some(reason), Some(route)) = (error.protection(), this.route.as_ref()) {
                    route.protection(reason);
                }
                let route = this.route.as_ref().map_or("-", |r| r.name());
                match error.status() {
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
