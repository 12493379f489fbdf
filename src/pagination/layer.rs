//! [`PaginationLayer`]: applies [`super::plan`] to list requests, refusing bad ones early.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::FutureExt;
use http::{HeaderValue, Method, Uri};
use tower::{Layer, Service};

use super::{CLAMPED_HEADER, PagePlan, plan};
use crate::error::ProxyError;
use crate::routing::Matched;
use crate::{Request, Response};

/// Rewrites the query of GET/HEAD requests on list routes; refuses bad ones without calling the
/// inner service. Stores the [`PagePlan`] in the request extensions for the list guard.
#[derive(Debug, Clone, Copy, Default)]
pub struct PaginationLayer;

impl<S> Layer<S> for PaginationLayer {
    type Service = PaginationService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PaginationService { inner }
    }
}

/// The service of [`PaginationLayer`].
#[derive(Debug, Clone)]
pub struct PaginationService<S> {
    inner: S,
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl<S> Service<Request> for PaginationService<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        // The route is shared (`Arc`); its policy is read in place, not copied per request.
        let route = match req.extensions().get::<Matched>() {
            Some(Matched::Route(route)) if is_read(req.method()) && route.list.is_some() => {
                Arc::clone(route)
            }
            _ => return Box::pin(self.inner.call(req)),
        };
        let Some(policy) = &route.list else {
            return Box::pin(self.inner.call(req));
        };
        let path = req.uri().path().to_owned();
        let planned = match plan(policy, &path, req.uri().query().unwrap_or_default()) {
            Ok(planned) => planned,
            Err(error) => return Box::pin(std::future::ready(Ok(rejected(error)))),
        };
        let path_and_query = if planned.query.is_empty() {
            path
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
            tracing::error!(%path_and_query, "rewritten list request is not a valid URI");
            return Box::pin(std::future::ready(Ok(ProxyError::Internal.into_response())));
        };
        *req.uri_mut() = uri;
        let clamped = planned.plan.clamped_from.map(|requested| {
            format!(
                "{}={}; requested={requested}",
                policy.limit_param, planned.plan.page_size
            )
        });
        req.extensions_mut().insert::<PagePlan>(planned.plan);
        Box::pin(self.inner.call(req).map(move |result| {
            result.map(|mut response| {
                if let Some(value) = clamped.and_then(|c| HeaderValue::from_str(&c).ok()) {
                    response.headers_mut().insert(CLAMPED_HEADER, value);
                }
                response
            })
        }))
    }
}

fn is_read(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

fn rejected(error: ProxyError) -> Response {
    tracing::debug!(%error, "list request refused");
    error.into_response()
}
