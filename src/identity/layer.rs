//! The identity gate of a route that reads a claim ([`IdentityLayer`]): verifies the request's
//! token once, puts its claims in the request's extensions for the limits and the table route
//! below, and answers 401 for a request without a good token (403 for one without the claim,
//! 429 while its address is over its refused-token budget) unless the route lets anonymous
//! requests through (keyed by their address).

use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::TryFutureExt;
use futures_util::future::BoxFuture;
use tower::{Layer, Service};

use super::{IdentityError, TokenError, Verified, Verifier};
use crate::client_addr::ClientAddr;
use crate::{BoxError, Request, Response};

/// What one route asks of its identity.
#[derive(Debug)]
pub(crate) struct Gate {
    /// The identity's verifier.
    pub(crate) verifier: Arc<Verifier>,
    /// Claims the route reads (its limit key's, its scope's): a token without one is refused.
    pub(crate) claims: Vec<String>,
    /// `anonymous: client`: a request without a good token passes, with no claims.
    pub(crate) anonymous: bool,
}

impl Gate {
    /// The claims of a request, `Ok(None)` for an anonymous one the route lets through.
    async fn check(
        &self,
        token: Option<String>,
        address: IpAddr,
    ) -> Result<Option<Verified>, IdentityError> {
        let identity = &self.verifier.config().name;
        let anonymous = self.anonymous;
        let refused = match self.verifier.verify(token.as_deref(), address).await {
            Ok(claims) => {
                let verified = Verified { claims };
                match self.claims.iter().find(|c| verified.claim(c).is_none()) {
                    None => return Ok(Some(verified)),
                    Some(claim) => {
                        tracing::debug!(identity = %identity, claim = %claim, anonymous, "token lacks a claim the route reads");
                        return if anonymous {
                            Ok(None)
                        } else {
                            Err(IdentityError::LacksClaim)
                        };
                    }
                }
            }
            Err(e) => e,
        };
        tracing::debug!(identity = %identity, reason = %refused, anonymous, "token refused");
        match refused {
            // Keys not fetched yet are not the client's fault: an anonymous route still
            // serves it, as one with no token.
            _ if anonymous => Ok(None),
            TokenError::KeysUnavailable => Err(IdentityError::KeysUnavailable),
            TokenError::Missing => Err(IdentityError::Missing(
                self.verifier.config().header.clone(),
            )),
            TokenError::Invalid(_) => Err(IdentityError::Invalid),
            TokenError::Throttled(wait) => Err(IdentityError::Throttled(
                wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            )),
        }
    }
}

/// Puts a route's identity gate in front of its limits.
#[derive(Debug, Clone)]
pub(crate) struct IdentityLayer {
    gate: Arc<Gate>,
}

impl IdentityLayer {
    pub(crate) fn new(gate: Arc<Gate>) -> Self {
        Self { gate }
    }
}

impl<S> Layer<S> for IdentityLayer {
    type Service = IdentityService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        IdentityService {
            gate: Arc::clone(&self.gate),
            inner,
        }
    }
}

/// The service [`IdentityLayer`] makes.
#[derive(Debug, Clone)]
pub(crate) struct IdentityService<S> {
    gate: Arc<Gate>,
    inner: S,
}

impl<S> Service<Request> for IdentityService<S>
where
    S: Service<Request, Response = Response, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        // The clone that was driven ready serves this request (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let gate = Arc::clone(&self.gate);
        let token = gate.verifier.token(request.headers());
        // As limits count it; a request with no client (tests of the layer alone) counts as
        // one unknown address.
        let address = request
            .extensions()
            .get::<ClientAddr>()
            .map_or(IpAddr::from([0, 0, 0, 0]), ClientAddr::key);
        let checked = async move { gate.check(token, address).await.map_err(BoxError::from) };
        // A combinator rather than one async block: the compiler cannot prove an async block
        // that awaits the generic `S::Future` `Send` for every lifetime.
        Box::pin(checked.and_then(move |verified| {
            if let Some(verified) = verified {
                request.extensions_mut().insert(verified);
            }
            inner.call(request)
        }))
    }
}
