//! `limits.cost.response`: what an answer owes the rate-limit service, its rows (table
//! exports) or bytes counted as they go out and sent when it ends, in one more
//! `ShouldRateLimit` whose `hits_addend` is that count (Envoy's `apply_on_stream_done`,
//! Envoy Gateway's `cost.response`). The answer is not affected by that call's verdict: the
//! client's requests that start after it lands are, once the service counts it over its
//! budget.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;

use super::RateLimitService;
use crate::limit::config::QuotaUnit;

/// One answer's debt to the service: its descriptor, and what it has sent so far.
#[derive(Debug)]
pub(crate) struct ServiceCost {
    rls: RateLimitService,
    entries: Vec<Entry>,
    unit: QuotaUnit,
    sent: AtomicU64,
}

impl ServiceCost {
    pub(crate) fn new(rls: RateLimitService, entries: Vec<Entry>, unit: QuotaUnit) -> Self {
        Self {
            rls,
            entries,
            unit,
            sent: AtomicU64::new(0),
        }
    }

    /// What it counts.
    pub(crate) fn unit(&self) -> QuotaUnit {
        self.unit
    }

    /// `n` more went out.
    pub(crate) fn add(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
    }

    /// What went out so far.
    #[cfg(test)]
    pub(crate) fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

impl Drop for ServiceCost {
    /// The answer ended (whole, cut or left by its client): what went out is sent. A
    /// runtime shutting down has none left to send it from.
    fn drop(&mut self) {
        let sent = *self.sent.get_mut();
        if sent == 0 {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (rls, entries) = (self.rls.clone(), std::mem::take(&mut self.entries));
        runtime.spawn(async move { rls.charge(entries, sent).await });
    }
}

/// Shortest wait for a charge's answer: no request waits on it, so a busy service is given
/// longer than a decision's `timeout` before the charge is lost.
const CHARGE_TIMEOUT: Duration = Duration::from_secs(1);

impl RateLimitService {
    /// Adds `n` to the counters of `entries`, in calls of at most `u32::MAX` (the width of
    /// `hits_addend`). The verdicts do not matter. What is not sent is lost (the service's
    /// counters are then short): logged once when charges start failing and once when they
    /// go through again, apart from the decisions' health (`on_store_error` is not involved).
    pub(crate) async fn charge(&self, entries: Vec<Entry>, mut n: u64) {
        let timeout = CHARGE_TIMEOUT.max(self.config.timeout);
        while n > 0 {
            let hits = u32::try_from(n).unwrap_or(u32::MAX);
            let answer = self.call(entries.clone(), hits, timeout).await;
            if self.charges.changed(answer.is_err()) {
                match &answer {
                    Ok(_) => tracing::info!("answers' costs reach the rate-limit service again"),
                    Err(error) => {
                        tracing::warn!(%error, lost = n, "an answer's cost could not be sent to the rate-limit service; its counters fall short until charges go through");
                    }
                }
            }
            if answer.is_err() {
                return;
            }
            n -= u64::from(hits);
        }
    }
}
