//! The router: loads the current [`Generation`] per request (so keep-alive and HTTP/2
//! connections follow a reload) and dispatches to the stack built for the matched route.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use tower::Service;

use crate::generation::Generation;
use crate::methods::{CheckForm, ScanForm, form_wanted};
use crate::route::RouteFuture;
use crate::{Request, Response};

/// The generation the server currently serves; a reload is one `store`.
pub type Current = Arc<ArcSwap<Generation>>;

/// Dispatches each request to its route's stack in the current generation.
#[derive(Debug, Clone)]
pub struct Router {
    current: Current,
}

impl Router {
    /// A router over the generation in `current`.
    pub fn new(current: Current) -> Self {
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
        } else if form_wanted(&req, at) {
            // A form body may carry `_method` (see methods::form).
            req.extensions_mut().insert(CheckForm);
        } else if at.form_moves != 0 {
            // Off list paths a form is scanned as it streams (see methods::form).
            req.extensions_mut().insert(ScanForm(at.form_moves));
        }
        route.call(req)
    }
}
