//! [`PaginationLayer`]: applies [`super::plan`] to a list route's requests, refusing bad ones
//! early.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{HeaderValue, Method, Uri};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::{CLAMPED_HEADER, PagePlan, PlanError, ReportPlan, WOULD_REWRITE_HEADER, plan};
use crate::list::config::ListPolicy;
use crate::telemetry::{Outcome, RouteMetrics};
use crate::{BoxError, Request, Response};

/// Headers that ask for a slice of a page: `Range`, `If-Range`, and Netscape's `Request-Range`
/// that Apache httpd still honours, with the `_` spellings CGI-style servers read as them.
const RANGE_HEADERS: [&str; 5] = [
    "range",
    "if-range",
    "request-range",
    "if_range",
    "request_range",
];

/// Rewrites the query of GET/HEAD requests on one list route; refuses bad ones without calling
/// the inner service. Stores the [`PagePlan`] in the request extensions for the list guard.
#[derive(Debug, Clone)]
pub(crate) struct PaginationLayer {
    route: Arc<ListPolicy>,
    metrics: Arc<RouteMetrics>,
}

impl PaginationLayer {
    /// The layer of one list route, counting report-only findings in `metrics`.
    pub(crate) fn new(route: Arc<ListPolicy>, metrics: Arc<RouteMetrics>) -> Self {
        Self { route, metrics }
    }
}

impl<S> Layer<S> for PaginationLayer {
    type Service = PaginationService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PaginationService {
            inner,
            route: Arc::clone(&self.route),
            metrics: Arc::clone(&self.metrics),
        }
    }
}

/// The service of [`PaginationLayer`].
#[derive(Debug, Clone)]
pub(crate) struct PaginationService<S> {
    inner: S,
    route: Arc<ListPolicy>,
    metrics: Arc<RouteMetrics>,
}

impl<S> Service<Request> for PaginationService<S>
where
    S: Service<Request, Response = Response, Error = BoxError>,
{
    type Response = Response;
    type Error = BoxError;
    type Future = PaginationFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let policy = &*self.route;
        if !is_read(req.method()) {
            // A list route that serves other methods too. Backends that run the list handler
            // whatever the method (a Django function view, Spring's `@RequestMapping` without
            // `method`, Express's `app.all`) read a POST's query as a GET's: it is checked as a
            // GET's, refused where a GET's would be or would be clamped, and sent unchanged. A
            // CORS preflight carries the query of the GET it announces (which is clamped when
            // it comes): only what that GET would be refused for refuses it.
            let preflight = req.method() == Method::OPTIONS
                && req.headers().contains_key("access-control-request-method");
            if !policy.report_only {
                if let Err(error) = unchanged(policy, req.uri(), preflight) {
                    return PaginationFuture::refused(error.into());
                }
                super::drop_controlled_cookies(policy, req.headers_mut());
            }
            return PaginationFuture::passed(self.inner.call(req), None);
        }
        let path = req.uri().path();
        let query = req.uri().query().unwrap_or_default();
        let planned = plan(policy, path, query);
        if policy.report_only {
            let (page_size, report) = self.report(&planned, query);
            req.extensions_mut().insert(ReportPlan { page_size });
            return PaginationFuture::reporting(self.inner.call(req), report);
        }
        let planned = match planned {
            Ok(planned) => planned,
            Err(error) => return PaginationFuture::refused(error.into()),
        };
        let path_and_query = if planned.query.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{}", planned.query)
        };
        // Every piece came from a valid URI, digits or encoded config values, so this cannot
        // fail; if it ever does, refuse rather than forward the unchecked original.
        let mut parts = req.uri().clone().into_parts();
        let rewritten = path_and_query.parse().ok().and_then(|pq| {
            parts.path_and_query = Some(pq);
            Uri::from_parts(parts).ok()
        });
        let Some(uri) = rewritten else {
            // Lengths only: the query may hold a client's tokens.
            let (path_len, query_len) = (path.len(), planned.query.len());
            tracing::error!(
                path_len,
                query_len,
                "rewritten list request is not a valid URI"
            );
            return PaginationFuture::refused(BoxError::from("rewritten list request is invalid"));
        };
        *req.uri_mut() = uri;
        // A page is relayed whole or not at all: a ranged answer is a slice whose items the
        // guard cannot count (a server may ignore `Range`, RFC 9110 §14.2).
        let headers = req.headers_mut();
        if headers.keys().any(|name| name.as_str().ends_with("range")) {
            for name in RANGE_HEADERS {
                headers.remove(name);
            }
        }
        let dropped = super::drop_controlled_cookies(policy, headers);
        if dropped > 0 {
            tracing::debug!(dropped, "cookies named like paging parameters were dropped");
        }
        let clamped = planned.plan.clamped_from.and_then(|requested| {
            let value = format!(
                "{}={}; requested={requested}",
                policy.limit_param, planned.plan.page_size
            );
            HeaderValue::from_str(&value).ok()
        });
        req.extensions_mut().insert::<PagePlan>(planned.plan);
        PaginationFuture::passed(self.inner.call(req), clamped)
    }
}

impl<S> PaginationService<S> {
    /// Report-only: what planning would have done to the request, as response headers (counted
    /// and logged), and the page size the guard checks against.
    fn report(&self, planned: &Result<super::Planned, PlanError>, query: &str) -> (u64, Report) {
        let policy = &*self.route;
        let route = self.metrics.name();
        let mut headers = Vec::new();
        match planned {
            Err(error) => {
                self.metrics.reported("refused");
                tracing::info!(%route, %error, "report-only: pagination would have refused this request");
                let report = Report {
                    headers,
                    refusal: Some(PlanWouldRefuse(error.clone())),
                };
                (policy.max_limit.min(policy.max_items), report)
            }
            Ok(planned) => {
                if let Some(requested) = planned.plan.clamped_from {
                    self.metrics.reported("clamped");
                    tracing::info!(%route, requested, limit = planned.plan.page_size, "report-only: pagination would have clamped this request");
                } else if planned.query != query {
                    self.metrics.reported("rewritten");
                }
                if planned.query != query
                    && let Ok(value) = HeaderValue::from_str(&planned.query)
                {
                    headers.push((WOULD_REWRITE_HEADER, value));
                }
                let report = Report {
                    headers,
                    refusal: None,
                };
                (planned.plan.page_size, report)
            }
        }
    }
}

/// Checks the query of a request that is not a read as a read's would be checked: an error
/// where a read's would be refused, or where its page size would be lowered (the query is sent
/// as it came, so a clamp cannot apply) unless `clamp_passes`.
fn unchanged(
    policy: &super::ListPolicy,
    uri: &http::Uri,
    clamp_passes: bool,
) -> Result<(), PlanError> {
    let planned = plan(policy, uri.path(), uri.query().unwrap_or_default())?;
    match planned.plan.clamped_from {
        Some(value) if !clamp_passes => Err(super::PaginationError::LimitTooLarge {
            param: policy.limit_param.clone(),
            value,
            max: planned.plan.page_size,
        }
        .into()),
        _ => Ok(()),
    }
}

fn is_read(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

pin_project! {
    /// The future of [`PaginationService`]: a refusal, or the inner call.
    pub struct PaginationFuture<F> {
        #[pin]
        inner: Option<F>,
        error: Option<BoxError>,
        clamped: Option<HeaderValue>,
        report: Report,
    }
}

/// What report-only mode adds to the answer: headers, and the refusal the route's rescue
/// describes (`pagegate-would-refuse`) as it would have answered it.
#[derive(Debug, Default)]
pub(crate) struct Report {
    headers: Vec<(&'static str, HeaderValue)>,
    refusal: Option<PlanWouldRefuse>,
}

/// In report-only mode, the refusal pagination would have answered, on the response.
#[derive(Debug, Clone)]
pub(crate) struct PlanWouldRefuse(pub(crate) PlanError);

impl<F> PaginationFuture<F> {
    fn refused(error: BoxError) -> Self {
        tracing::debug!(%error, "list request refused");
        Self {
            inner: None,
            error: Some(error),
            clamped: None,
            report: Report::default(),
        }
    }

    fn passed(inner: F, clamped: Option<HeaderValue>) -> Self {
        Self {
            inner: Some(inner),
            error: None,
            clamped,
            report: Report::default(),
        }
    }

    fn reporting(inner: F, report: Report) -> Self {
        Self {
            inner: Some(inner),
            error: None,
            clamped: None,
            report,
        }
    }
}

impl<F> Future for PaginationFuture<F>
where
    F: Future<Output = Result<Response, BoxError>>,
{
    type Output = Result<Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            let error = this.error.take();
            return Poll::Ready(Err(
                error.unwrap_or_else(|| "polled after completion".into())
            ));
        };
        let mut response = ready!(inner.poll(cx))?;
        for (name, value) in this.report.headers.drain(..) {
            response.headers_mut().append(name, value);
        }
        if let Some(refusal) = this.report.refusal.take() {
            response.extensions_mut().insert(refusal);
        }
        if let Some(value) = this.clamped.take() {
            response.headers_mut().insert(CLAMPED_HEADER, value);
            if response.extensions().get::<Outcome>().is_none() {
                response.extensions_mut().insert(Outcome::Clamped);
            }
        }
        Poll::Ready(Ok(response))
    }
}
