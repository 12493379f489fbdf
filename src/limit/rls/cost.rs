//! `limits.cost.response`: what an answer owes the rate-limit service, its rows (table
//! exports) or bytes counted as they go out and sent in more `ShouldRateLimit` calls whose
//! `hits_addend` is that count: at most every `cost.every` while it streams, and the rest
//! when it ends (Envoy's `apply_on_stream_done`, Envoy Gateway's `cost.response`, which send
//! only the latter: a long export would then be counted only when it is over). The answer is
//! not affected by those calls' verdicts: the client's requests that start after they land
//! are, once the service counts it over its budget.

use crate::limit::rls::Descriptors;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use super::RateLimitService;
use crate::limit::config::QuotaUnit;
use crate::sync::Interval;

/// One answer's debt to the service: its descriptor, what it has sent so far and what of it
/// has been charged.
#[derive(Debug)]
pub(crate) struct ServiceCost {
    rls: RateLimitService,
    entries: Descriptors,
    unit: QuotaUnit,
    sent: AtomicU64,
    /// What interim charges have taken (only grows: `fetch_max`).
    charged: AtomicU64,
    /// When the next interim charge is due (`every` after the last).
    interim: Interval,
    /// An interim charge is on its way: the next due one waits (its units go with the one
    /// after, or at the end), so a slow service meets at most one a stream and the last.
    in_flight: Arc<AtomicBool>,
}

/// Clears [`ServiceCost::in_flight`] when its charge is done (or was never sent).
struct InFlight(Arc<AtomicBool>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl ServiceCost {
    pub(crate) fn new(
        rls: RateLimitService,
        entries: Descriptors,
        unit: QuotaUnit,
        every: Duration,
    ) -> Self {
        Self {
            rls,
            entries,
            unit,
            sent: AtomicU64::new(0),
            charged: AtomicU64::new(0),
            interim: Interval::new(every, false),
            in_flight: Arc::default(),
        }
    }

    /// What it counts.
    pub(crate) fn unit(&self) -> QuotaUnit {
        self.unit
    }

    /// `n` more went out; what is owed is sent when `every` has passed since the last time.
    /// One clock read a chunk or frame.
    pub(crate) fn add(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
        // One of the frames that find the charge due sends it.
        if !self.interim.pass() || self.in_flight.swap(true, Ordering::AcqRel) {
            return;
        }
        let in_flight = InFlight(Arc::clone(&self.in_flight));
        let sent = self.sent.load(Ordering::Relaxed);
        let before = self.charged.fetch_max(sent, Ordering::Relaxed);
        self.send(
            sent.saturating_sub(before),
            self.entries.clone(),
            Some(in_flight),
        );
    }

    /// Sends `n` units in a task of its own: no frame waits on the service. `in_flight` is
    /// cleared when it is done.
    fn send(&self, n: u64, entries: Descriptors, in_flight: Option<InFlight>) {
        if n == 0 {
            return;
        }
        // A runtime shutting down has none left to send it from.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let rls = self.rls.clone();
        runtime.spawn(async move {
            rls.charge(entries, n).await;
            drop(in_flight);
        });
    }

    /// Says the interim charge on its way is done (tests do not wait for the service).
    #[cfg(test)]
    pub(crate) fn settle(&self) {
        self.in_flight.store(false, Ordering::Release);
    }

    /// What went out so far.
    #[cfg(test)]
    pub(crate) fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// What interim charges have sent so far.
    #[cfg(test)]
    pub(crate) fn charged(&self) -> u64 {
        self.charged.load(Ordering::Relaxed)
    }
}

impl Drop for ServiceCost {
    /// The answer ended (whole, cut or left by its client): what went out and was not charged
    /// yet is sent.
    fn drop(&mut self) {
        let owed = self.sent.get_mut().saturating_sub(*self.charged.get_mut());
        let entries = std::mem::take(&mut self.entries);
        self.send(owed, entries, None);
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
    pub(crate) async fn charge(&self, entries: Descriptors, mut n: u64) {
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
