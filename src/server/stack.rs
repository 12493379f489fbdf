//! The one place the request stack is assembled, outermost layer first.

use std::convert::Infallible;
use std::sync::Arc;

use tower::ServiceBuilder;
use tower::util::BoxCloneSyncService;

use crate::config::Config;
use crate::guard::ListGuardLayer;
use crate::pagination::PaginationLayer;
use crate::routing::RouteLayer;
use crate::telemetry::{AccessLogLayer, Metrics};
use crate::upstream::Proxy;
use crate::{Request, Response};

/// The service every request goes through.
pub type Stack = BoxCloneSyncService<Request, Response, Infallible>;

/// Builds the stack for a validated config.
pub fn build(config: &Config, metrics: &Arc<Metrics>) -> Stack {
    let service = ServiceBuilder::new()
        // Outermost: logs and counts every answer, including pagegate's own refusals.
        .layer(AccessLogLayer::new(Arc::clone(metrics)))
        // Match the route first: every later layer reads its policy from the extensions; an
        // unmatched request under `default: deny` ends here with 404.
        .layer(RouteLayer::new(config))
        // Refuse or rewrite list requests (limit, offset, cursor) before anything is sent.
        .layer(PaginationLayer)
        // Innermost before the network: holds, scans and cuts list responses as they arrive.
        .layer(ListGuardLayer::new(
            Arc::clone(metrics),
            config.max_held_bytes,
        ))
        .service(Proxy::new(config));
    BoxCloneSyncService::new(service)
}
