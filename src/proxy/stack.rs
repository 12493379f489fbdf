//! The one place the request stack is assembled, for every route kind, outermost layer first:
//! the global part every request crosses, and the part built for each route when its config
//! loads ([`crate::proxy::generation`] resolves what each is built from).
//!
//! ```text
//! global:  access log ─▶ router ─┬─▶ list route:     rescue ─▶ [identity] ─▶ [limits] ─▶ form check ─▶ pagination ─▶ list guard ─▶ forward
//!                                ├─▶ plain route:    rescue ─▶ [identity] ─▶ [limits] ─▶ form check ─▶ forward (WebSocket tunnels too)
//!                                ├─▶ table page:     rescue ─▶ [identity] ─▶ [limits] ─▶ form check ─▶ compression ─▶ page query
//!                                ├─▶ table export:   rescue ─▶ [identity] ─▶ [limits] ─▶ form check ─▶ compression ─▶ export stream
//!                                ├─▶ default:        rescue ─▶ [identity] ─▶ [limits] ─▶ form check ─▶ forward (pass) | refuse (deny)
//!                                └─▶ method refusal: rescue ─▶ form check ─▶ refuse
//! ```

use std::sync::Arc;

use http_body_util::BodyExt;
use tower::{Service, ServiceBuilder};
use tower_http::compression::CompressionLayer;

use crate::identity::{Gate, IdentityLayer};
use crate::limit::{LimitLayer, Limits};
use crate::list::config::ListPolicy;
use crate::list::guard::{HeldBudget, ListGuardLayer};
use crate::list::pagination::PaginationLayer;
use crate::methods::FormCheckLayer;
use crate::proxy::rescue::RescueLayer;
use crate::proxy::router::RouteService;
use crate::table::{Resource, TableService};
use crate::telemetry::{AccessLog, AccessLogLayer, RouteMetrics};
use crate::{BoxError, Request, Response};

/// The global part, around the router.
pub(crate) fn global<S>(router: S, log: AccessLogLayer) -> AccessLog<S> {
    ServiceBuilder::new()
        // Outermost: gives every request an id, counts every answer (pagegate's own refusals
        // too, and requests left before one), starts its server span when tracing, and logs
        // each request when its response body ends.
        .layer(log)
        .service(router)
}

/// What one route's stack is built from, all resolved by the generation.
#[derive(Debug)]
pub struct RouteParts {
    /// The route's name.
    pub name: String,
    /// The route's metric handles.
    pub metrics: Arc<RouteMetrics>,
    /// The list policy and codec, on list routes.
    pub list: Option<Arc<ListPolicy>>,
    /// The route's rate and concurrency limiters, when it has limits.
    pub limits: Option<Arc<Limits>>,
    /// The route's identity gate, when its limit key or table scope reads a claim.
    pub(crate) identity: Option<Arc<Gate>>,
    /// The budget all held list pages share.
    pub room: Arc<HeldBudget>,
}

impl RouteParts {
    /// A route's parts with no identity gate.
    pub fn new(
        name: &str,
        metrics: Arc<RouteMetrics>,
        list: Option<Arc<ListPolicy>>,
        limits: Option<Arc<Limits>>,
        room: Arc<HeldBudget>,
    ) -> Self {
        Self {
            name: name.to_owned(),
            metrics,
            list,
            limits,
            identity: None,
            room,
        }
    }
}

/// One route's stack over its terminal (the upstream hop, or the `deny` refusal).
pub fn route<T>(parts: RouteParts, terminal: T) -> RouteService
where
    T: Service<Request, Response = Response, Error = BoxError> + Clone + Send + Sync + 'static,
    T::Future: Send + 'static,
{
    let RouteParts {
        name,
        metrics,
        list,
        limits,
        identity,
        room,
    } = parts;
    let stack = ServiceBuilder::new()
        // Outermost per route: every error below becomes its status and problem document here
        // (the one rescue point), and every answer is tagged with the route for the access log.
        .layer(RescueLayer::new(Arc::clone(&metrics)))
        // Routes that read a claim only: a request without a good token is refused (401)
        // before it spends a limit; the claims ride in its extensions to the layers below.
        .option_layer(identity.map(IdentityLayer::new))
        // Limited routes only: a request over a rate or without a free slot is refused before
        // any other work; a slot is held until the answer's body ends.
        .option_layer(limits.map(|limits| LimitLayer::new(limits, Arc::clone(&metrics))))
        // On list paths only (the router marks them): a form body naming `_method` as a read
        // method is refused before anything is sent, whatever route serves the request.
        .layer(FormCheckLayer)
        // List routes only: refuse or rewrite list requests (limit, offset, cursor) before
        // anything is sent.
        .option_layer(
            list.clone()
                .map(|list| PaginationLayer::new(list, Arc::clone(&metrics))),
        )
        // List routes only, innermost before the network: hold, scan and cut list responses as
        // they arrive.
        .option_layer(list.map(|list| ListGuardLayer::new(list, metrics, room)))
        .service(terminal);
    RouteService::new(&name, stack)
}

/// A table route's stack: its pages (`<path>`) or its export (`<path>/export`).
pub(crate) fn table(parts: RouteParts, resource: Arc<Resource>, export: bool) -> RouteService {
    let exported = export.then(|| parts.metrics.export());
    let terminal = ServiceBuilder::new()
        // Boxed again after compression, so every route's stack has the same body type.
        .map_response(|response: http::Response<_>| response.map(BodyExt::boxed))
        // Pages and exports are compressed when the client asks (gzip or zstd); the encoder
        // flushes whenever the export has no chunk ready, and before an export's error.
        .layer(CompressionLayer::new())
        .service(TableService::new(resource, exported));
    route(parts, terminal)
}
