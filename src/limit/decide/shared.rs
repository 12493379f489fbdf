//! `store: redis`: the rate and a slot taken in Redis in one round trip, a full slot waiting
//! in the queue by polling Redis, and `on_redis_error` when Redis cannot answer.

use std::sync::Arc;

use super::{Decision, Limits, Notes};
use crate::limit::concurrency::Slot;
use crate::limit::shared::{NoAnswer, Shared};
use crate::limit::{ClientKey, Full, LimitError, NoSlot, Refusal, SHARED_QUEUE_POLL};
use crate::telemetry::RouteMetrics;

impl Limits {
    /// Redis could not answer: `on_redis_error` decides, and with `open` this process's own
    /// limiters take over (its rate too when Redis had not checked it, `rate`).
    async fn shared_failed(
        self: &Arc<Self>,
        key: ClientKey,
        mut notes: Notes,
        metrics: &Arc<RouteMetrics>,
        rate: bool,
    ) -> Result<(Option<Slot>, Notes), LimitError> {
        self.redis_failed(&mut notes, metrics)?;
        match self.decide_local(key, notes, metrics, rate) {
            Decision::Go(slot, notes) => Ok((slot, notes)),
            Decision::Refuse(error) => Err(error),
            Decision::Later(wait) => wait.await,
        }
    }

    /// The shared limiters in Redis.
    pub(in crate::limit) async fn decide_shared(
        self: Arc<Self>,
        shared: Arc<Shared>,
        (key, mut notes): (ClientKey, Notes),
        metrics: Arc<RouteMetrics>,
    ) -> Result<(Option<Slot>, Notes), LimitError> {
        // Only a class with a cap of its own, or a route total, takes a slot: another class's
        // cap is not this request's.
        let slots = self.slots.is_some() && shared.caps(&key);
        // The rate and the first try for a slot in one round trip.
        let answer = shared
            .take(&key, (self.rates.is_some(), slots), &metrics)
            .await;
        shared.health(&answer);
        let first = match answer {
            Ok(taken) => {
                if let Some((verdict, fields)) = taken.rate {
                    self.rate_verdict(verdict, Some(fields), &mut notes, &metrics)?;
                }
                taken.slot
            }
            // Batched rates decided the rate before the slot's call failed: it is counted once,
            // and only the slot falls back.
            Err(NoAnswer {
                rate: Some((verdict, fields)),
                ..
            }) => {
                self.rate_verdict(verdict, Some(fields), &mut notes, &metrics)?;
                return self.shared_failed(key, notes, &metrics, false).await;
            }
            Err(_) => return self.shared_failed(key, notes, &metrics, true).await,
        };
        if !slots {
            return Ok((None, notes));
        }
        self.shared_slot(&shared, (key, notes), &metrics, first)
            .await
    }

    /// A shared slot, after the first try (`first`, when the first call asked for one): a
    /// full limit waits in the queue, polling Redis, or is refused.
    async fn shared_slot(
        self: &Arc<Self>,
        shared: &Shared,
        (key, mut notes): (ClientKey, Notes),
        metrics: &Arc<RouteMetrics>,
        mut first: Option<Result<crate::limit::shared::Lease, Full>>,
    ) -> Result<(Option<Slot>, Notes), LimitError> {
        let started = tokio::time::Instant::now();
        // A shared queue is a poll, within this process's queue places.
        let mut queued = None;
        loop {
            let outcome = match first.take() {
                Some(outcome) => outcome,
                // A rate refused in report-only mode took no slot yet; a queued request polls.
                None => {
                    let answer = shared.take(&key, (false, true), metrics).await;
                    shared.health(&answer);
                    match answer.map(|taken| taken.slot) {
                        Ok(Some(outcome)) => outcome,
                        Ok(None) | Err(_) => {
                            return self.shared_failed(key, notes, metrics, false).await;
                        }
                    }
                }
            };
            let full = match outcome {
                Ok(lease) => return Ok((Some(Slot::Lease(lease)), notes)),
                Err(full) => full,
            };
            let queue = self.config.queue.filter(|_| !self.config.report_only);
            let mut full = full;
            if queued.is_none()
                && let Some(q) = queue
            {
                match shared.enqueue(q.size.get(), key) {
                    Ok(place) => queued = Some(place),
                    // The client's own waiters fill its share of the queue: over its limit.
                    Err(crate::limit::queue::NoPlace::ClientFull(cap)) => {
                        full = Full::PerClient(cap);
                    }
                    Err(crate::limit::queue::NoPlace::Full) => {}
                }
            }
            let Some(q) = queue.filter(|_| queued.is_some()) else {
                let error = LimitError {
                    refusal: Refusal::Concurrency(NoSlot::Full(full)),
                    fields: notes.fields.clone(),
                };
                if notes.refused(&error, metrics, self.config.report_only) {
                    return Err(error);
                }
                return Ok((None, notes));
            };
            let left = q.timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                let error = LimitError {
                    refusal: Refusal::Concurrency(NoSlot::Waited(full, q.timeout)),
                    fields: notes.fields.clone(),
                };
                notes.count(metrics, error.limit(), "refused");
                return Err(error);
            }
            tokio::time::sleep(SHARED_QUEUE_POLL.min(left)).await;
        }
    }
}
