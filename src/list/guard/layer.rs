//! [`ListGuardLayer`]: on a list route, a successful GET answer is held ([`super::hold`]) and
//! rebuilt as the client's page ([`super::cut`]); other answers stream through or are checked
//! in report-only mode.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::FutureExt;
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::BodyExt;
use tower::{Layer, Service};

use super::held::IN_FLIGHT;
use crate::client_addr::ClientAddr;
use crate::list::config::ListPolicy;
use crate::list::guard::cut::finish;
use crate::list::guard::hold::hold;
use crate::list::guard::{HeldBody, ReportBody, Reservation, Sending};
use crate::list::pagination::{PagePlan, ReportPlan};
use crate::telemetry::RouteMetrics;
use crate::{BoxError, GuardError, HeldBudget, Request, Response};

/// Holds, scans and cuts one list route's responses; see the module docs.
#[derive(Debug, Clone)]
pub(crate) struct ListGuardLayer {
    route: Arc<ListPolicy>,
    metrics: Arc<RouteMetrics>,
    room: Arc<HeldBudget>,
}

impl ListGuardLayer {
    /// The guard of one list route, reporting into the route's `metrics` and holding pages
    /// within `room`.
    pub(crate) fn new(
        route: Arc<ListPolicy>,
        metrics: Arc<RouteMetrics>,
        room: Arc<HeldBudget>,
    ) -> Self {
        Self {
            route,
            metrics,
            room,
        }
    }
}

impl<S> Layer<S> for ListGuardLayer {
    type Service = ListGuard<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ListGuard {
            inner,
            route: Arc::clone(&self.route),
            metrics: Arc::clone(&self.metrics),
            room: Arc::clone(&self.room),
        }
    }
}

/// The service of [`ListGuardLayer`].
#[derive(Debug, Clone)]
pub(crate) struct ListGuard<S> {
    inner: S,
    route: Arc<ListPolicy>,
    metrics: Arc<RouteMetrics>,
    room: Arc<HeldBudget>,
}

pub(super) type BoxFuture = Pin<Box<dyn Future<Output = Result<Response, BoxError>> + Send>>;

impl<S> Service<Request> for ListGuard<S>
where
    S: Service<Request, Response = Response, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = BoxError;
    type Future = futures_util::future::Either<S::Future, BoxFuture>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        use futures_util::future::Either;
        // The plan is taken out: nothing after this layer reads it. Requests without one
        // (methods other than GET and HEAD) pass untouched.
        if let Some(report) = req.extensions_mut().remove::<ReportPlan>() {
            // Report-only: the answer streams through untouched, scanned as it passes.
            let route = Arc::clone(&self.route);
            let metrics = Arc::clone(&self.metrics);
            return Either::Right(Box::pin(self.inner.call(req).map(move |result| {
                result.map(|response| {
                    let status = response.status();
                    if !status.is_success() || status == StatusCode::NO_CONTENT {
                        return response;
                    }
                    if response.headers().contains_key(header::CONTENT_ENCODING) {
                        // The request went through as written, compression asked for
                        // included: the scanner cannot read this one. Counted, so the
                        // reports say how much they could not see.
                        metrics.reported("unchecked_encoded");
                        return response;
                    }
                    response.map(|body| {
                        ReportBody::new(body, &route, report.page_size, metrics).boxed()
                    })
                })
            })));
        }
        let Some(plan) = req.extensions_mut().remove::<PagePlan>() else {
            return Either::Left(self.inner.call(req));
        };
        if req.method() == Method::HEAD {
            // No body to hold: keep the head from promising what a GET would not return (the
            // backend's length and, on keyset routes, its own pagination links).
            let keyset = plan.keyset.is_some();
            return Either::Right(Box::pin(self.inner.call(req).map(move |result| {
                result.map(|mut response| {
                    if response.status().is_success() {
                        response.headers_mut().remove(header::CONTENT_LENGTH);
                        if keyset {
                            response.headers_mut().remove(header::LINK);
                        }
                    }
                    response
                })
            })));
        }
        // The scanner reads bytes as sent; compressed bodies would be opaque to it.
        req.headers_mut().insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        let route = Arc::clone(&self.route);
        let metrics = Arc::clone(&self.metrics);
        let room = Arc::clone(&self.room);
        let client = req.extensions().get::<ClientAddr>().map(ClientAddr::key);
        // How a held page's stream is cut (see `held`): an HTTP/1 connection is closed; an
        // HTTP/2 stream alone is reset.
        let sending = Sending {
            close: (req.version() != http::Version::HTTP_2)
                .then(|| {
                    req.extensions()
                        .get::<ClientAddr>()
                        .and_then(ClientAddr::closer)
                })
                .flatten(),
        };
        // A combinator around the inner future, not an async block holding it (async blocks
        // over a generic `S::Future` trip rustc's "Send is not general enough",
        // rust-lang/rust#110338); the async block only sees the response.
        Either::Right(Box::pin(self.inner.call(req).then(
            move |result| async move {
                let response = result?;
                // Only a successful response with a body is a page; the rest passes untouched.
                let status = response.status();
                if !status.is_success() || status == StatusCode::NO_CONTENT {
                    return Ok(response);
                }
                // Reserve the page's bytes once the head says a page is coming; give up with a
                // 503 rather than let held pages grow without bound. Dropping the response
                // closes the upstream exchange.
                // The page's bytes and the allowance for its copies in flight (see `held`).
                let need = route.max_bytes.div_ceil(1024) + (IN_FLIGHT / 1024) as u64;
                let need = room.fit(u32::try_from(need).unwrap_or(u32::MAX));
                let reservation = room.reserve(client, need).await?;
                let (parts, pieces, allowance) =
                    guard(response, &route, &plan, &metrics, reservation).await?;
                let body = HeldBody::new(&room, pieces, allowance, sending);
                Ok(http::Response::from_parts(parts, body.boxed()))
            },
        )))
    }
}

/// A page to send: the client's head, and the body's pieces (slices of the held bytes).
pub(super) type Page = (http::response::Parts, Vec<Bytes>);

/// Turns the backend's response into the client's.
pub(super) async fn guard(
    response: Response,
    route: &ListPolicy,
    plan: &PagePlan,
    metrics: &RouteMetrics,
    mut reservation: Reservation,
) -> Result<(http::response::Parts, Vec<Bytes>, Option<Reservation>), BoxError> {
    let policy = route;
    let result = match hold(response, policy, plan).await {
        Ok(mut held) => {
            // Keep only what the held bytes need, and an allowance for the copies in flight of
            // at most the page itself; the rest returns to the budget.
            let kib = u32::try_from(held.bytes.len().div_ceil(1024)).unwrap_or(u32::MAX);
            let allowance = kib
                .min((IN_FLIGHT / 1024) as u32)
                .min(reservation.kib().saturating_sub(kib));
            reservation.shrink(kib.saturating_add(allowance));
            let allowance = reservation.split(allowance);
            // The reservation lives as long as the held bytes do: every slice of the page the
            // response is made of keeps it, so it is released when the last byte has been
            // written to the client's socket (or the client is gone), not when hyper has
            // merely taken the frames into its write queue.
            held.bytes = super::held::reserved(held.bytes, reservation);
            finish(held, policy, plan, metrics).map(|(parts, pieces)| (parts, pieces, allowance))
        }
        Err(error) => Err(error),
    };
    match result {
        Ok(page) => Ok(page),
        Err(error) => {
            // Logged where it becomes an answer (crate::proxy::rescue), counted here.
            if let Some(GuardError::OrderViolation { .. }) = error.downcast_ref() {
                metrics.order_violation();
            }
            Err(error)
        }
    }
}
