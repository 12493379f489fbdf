//! What a request's limits decided ([`Decision`]) and what its answer carries back
//! ([`Notes`]): the rate fields, report-only findings, and the tenant class its metrics name.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::Response;
use crate::limit::LimitError;
use crate::limit::concurrency::Slot;
use crate::limit::rate::Fields;
use crate::telemetry::RouteMetrics;

/// What the answer carries back: rate fields and report-only findings.
#[derive(Debug)]
pub(crate) struct Notes {
    pub(super) fields: Option<Fields>,
    would_refuse: Vec<LimitError>,
    /// The request's tenant class, for the metrics.
    pub(crate) class: Arc<str>,
    /// A byte quota its answer's body spends.
    pub(crate) bytes: Option<crate::limit::Charge>,
}

/// In report-only mode, the refusals the route's limits would have answered, on the response
/// (the route's rescue describes them in `pagegate-would-refuse`).
#[derive(Debug, Clone)]
pub(crate) struct LimitsWouldRefuse(pub(crate) Vec<LimitError>);

impl Notes {
    /// The notes of a request in tenant class `class`.
    pub(crate) fn new(class: Arc<str>) -> Self {
        Self {
            fields: None,
            would_refuse: Vec::new(),
            class,
            bytes: None,
        }
    }

    /// Counts a decision of the request's class.
    pub(crate) fn count(
        &self,
        metrics: &RouteMetrics,
        limit: &'static str,
        decision: &'static str,
    ) {
        metrics.limit(limit, decision, &self.class);
    }

    /// Counts a refusal; in report-only mode notes it and says to go on (false).
    pub(super) fn refused(
        &mut self,
        error: &LimitError,
        metrics: &RouteMetrics,
        report_only: bool,
    ) -> bool {
        let decision = if report_only { "reported" } else { "refused" };
        self.count(metrics, error.limit(), decision);
        if report_only {
            self.would_refuse.push(error.clone());
        }
        !report_only
    }

    pub(crate) fn apply(self, response: &mut Response) {
        let headers = response.headers_mut();
        if let Some(fields) = self.fields {
            headers.insert("ratelimit-policy", fields.policy);
            headers.insert("ratelimit", fields.state);
        }
        if !self.would_refuse.is_empty() {
            response
                .extensions_mut()
                .insert(LimitsWouldRefuse(self.would_refuse));
        }
    }
}

/// A decision still to be made: a queued wait, or a Redis round trip.
pub(crate) type Deciding =
    Pin<Box<dyn Future<Output = Result<(Option<Slot>, Notes), LimitError>> + Send>>;

/// What a request's limits decided without waiting.
pub(crate) enum Decision {
    /// Go on, with a slot when the route counts them.
    Go(Option<Slot>, Notes),
    /// Refused.
    Refuse(LimitError),
    /// Wait for the decision.
    Later(Deciding),
}
