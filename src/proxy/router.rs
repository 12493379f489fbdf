//! The router: loads the current [`Generation`] per request (so keep-alive and HTTP/2
//! connections follow a reload) and dispatches to the stack built for the matched route
//! ([`RouteService`], built once per route when its config loads by
//! [`crate::proxy::stack::route`]); and [`Refuse`], the terminal of routes that never reach a
//! backend.

use std::convert::Infallible;
use std::fmt;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use tower::{Service, ServiceExt};

use crate::methods::{self, CheckForm, MethodError, ScanForm, form_wanted};
use crate::proxy::generation::Generation;
use crate::route_table::NoRoute;
use crate::{BoxError, Request, Response};

/// The generation the server currently serves; a reload is one `store`.
pub(crate) type Current = Arc<ArcSwap<Generation>>;

/// Dispatches each request to its route's stack in the current generation.
#[derive(Debug, Clone)]
pub(crate) struct Router {
    current: Current,
}

impl Router {
    /// A router over the generation in `current`.
    pub(crate) fn new(current: Current) -> Self {
        Self { current }
    }
}

impl Service<Request> for Router {
    type Response = Response;
    type Error = Infallible;
    type Future = RouteFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        // A lock-free load; the route's stack holds what it needs past this call.
        let generation = self.current.load();
        let (route, at, refused) = generation.route(&req);
        if refused {
            // The refusing route says why, where it landed.
            req.extensions_mut().insert(at);
        } else if at.form_moves == 0 {
            // No `_method` in a body could move it.
        } else if form_wanted(&req, at) {
            // A form body on a list path is read whole for `_method` (see methods::form).
            req.extensions_mut().insert(CheckForm(at.form_moves));
        } else {
            // Off list paths a form is scanned as it streams (see methods::form).
            req.extensions_mut().insert(ScanForm(at.form_moves));
        }
        route.call(req)
    }
}

/// The future of a route: the one box per request on the way to the backend.
pub(crate) type RouteFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

/// A route's whole stack, type-erased behind an `Arc`: the router calls it through a shared
/// reference, so dispatching costs a clone of the stack's `Arc`s and one boxed future, never a
/// copy of a policy or a name lookup.
#[derive(Clone)]
pub struct RouteService {
    name: Arc<str>,
    stack: Arc<dyn Erased>,
}

impl RouteService {
    /// Erases a route's stack.
    pub fn new<S>(name: &str, stack: S) -> Self
    where
        S: Service<Request, Response = Response, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        Self {
            name: Arc::from(name),
            stack: Arc::new(stack),
        }
    }

    /// The route's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Serves one request.
    pub fn call(&self, req: Request) -> RouteFuture {
        self.stack.call(req)
    }
}

impl fmt::Debug for RouteService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteService")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A stack that can be called through `&self`: each call clones the stack (its layers hold only
/// `Arc`s and copies of small values) and drives the clone to completion.
trait Erased: Send + Sync {
    fn call(&self, req: Request) -> RouteFuture;
}

impl<S> Erased for S
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    fn call(&self, req: Request) -> RouteFuture {
        Box::pin(self.clone().oneshot(req))
    }
}

/// A terminal that refuses every request with the error `why` makes of it: the routes that
/// never reach a backend.
#[derive(Clone, Copy)]
pub struct Refuse {
    why: fn(&Request) -> BoxError,
}

impl Refuse {
    /// The `default: deny` route's terminal: [`NoRoute`] (404).
    pub fn no_route() -> Self {
        Self {
            why: |req| {
                NoRoute {
                    method: req.method().clone(),
                    path: req.uri().path().to_owned(),
                }
                .into()
            },
        }
    }

    /// The terminal of the route the router sends requests to that it refuses: a NUL in the
    /// path, a `Host` that is no host name, or [`methods::check`]'s own error where the
    /// request landed (the router notes it).
    pub fn method() -> Self {
        Self {
            why: |req| {
                if let Some(unfit) = crate::route_table::unfit(req) {
                    return unfit;
                }
                let at = req
                    .extensions()
                    .get::<methods::Landing>()
                    .copied()
                    .unwrap_or(methods::Landing {
                        list_path: true,
                        routed_path: true,
                        read_body: false,
                        override_moves: true,
                        form_moves: 0,
                        ambiguous_path: false,
                    });
                if at.ambiguous_path {
                    return crate::route_table::AmbiguousPath.into();
                }
                methods::check(req, at)
                    .err()
                    .unwrap_or(MethodError::Connect)
                    .into()
            },
        }
    }
}

impl fmt::Debug for Refuse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Refuse").finish_non_exhaustive()
    }
}

impl Service<Request> for Refuse {
    type Response = Response;
    type Error = BoxError;
    type Future = Ready<Result<Response, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        ready(Err((self.why)(&req)))
    }
}
