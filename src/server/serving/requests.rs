//! What serves each request of one client connection ([`Handler`]), on pagegate's own
//! HTTP/1.1 path and on hyper's alike.

use std::sync::Arc;

use tower::ServiceExt;

use crate::Request;
use crate::client_addr::{ClientAddr, TrustedProxies};
use crate::proxy::router::Router;
use crate::server::connection::{Answer, Conn};
use crate::telemetry::AccessLog;

/// What serves each request of one connection, on either path.
#[derive(Clone)]
pub(super) struct Handler {
    /// Counts each request in flight until its answer ends (eviction, HTTP/2 idle timeout,
    /// resets, stalled streams).
    pub(super) requests: Arc<Conn>,
    /// Rendered once per connection, cloned (reference counts) per request; resolved per
    /// request only behind a trusted proxy.
    pub(super) client: ClientAddr,
    pub(super) trusted: Arc<TrustedProxies>,
    pub(super) stack: AccessLog<Router>,
}

impl Handler {
    /// Routes `req` from this connection's client; `h2` when it came over HTTP/2.
    pub(super) fn call(
        &self,
        mut req: Request,
        h2: bool,
    ) -> Answer<tower::util::Oneshot<AccessLog<Router>, Request>> {
        let stream = self.requests.stream(h2);
        let mut client = self.client.clone();
        client.resolve(req.headers(), &self.trusted);
        req.extensions_mut().insert(client);
        Answer::new(self.stack.clone().oneshot(req), stream)
    }
}
