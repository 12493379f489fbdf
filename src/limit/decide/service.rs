//! `store: envoy_rls`: the rate asked of the rate-limit service, then a slot in this process.

use crate::limit::rls::Descriptors;
use std::sync::Arc;

use super::{Decision, Limits, Notes};
use crate::limit::concurrency::Slot;
use crate::limit::{ClientKey, LimitError, RateLimitService};
use crate::telemetry::RouteMetrics;

impl Limits {
    /// Asks the service for the request's rate (its descriptor `entries`, `cost.request`
    /// hits); a slot is then taken here. The service failing: `on_store_error` decides, and
    /// with `open` this process's own limiters take over.
    pub(in crate::limit) async fn decide_rls(
        self: Arc<Self>,
        rls: RateLimitService,
        entries: Descriptors,
        (key, mut notes): (ClientKey, Notes),
        metrics: Arc<RouteMetrics>,
    ) -> Result<(Option<Slot>, Notes), LimitError> {
        let rate = match rls.ask(entries, self.config.cost.request.get()).await {
            Ok(verdict) => {
                // An answer that describes no limit has no fields (refused or not).
                let answer = verdict.refused.map_or(Ok(()), Err);
                self.rate_verdict(answer, verdict.fields, &mut notes, &metrics)?;
                false
            }
            Err(_) => {
                self.redis_failed(&mut notes, &metrics)?;
                true
            }
        };
        match self.decide_local(key, notes, &metrics, rate) {
            Decision::Go(slot, notes) => Ok((slot, notes)),
            Decision::Refuse(error) => Err(error),
            Decision::Later(wait) => wait.await,
        }
    }
}
