//! The flush of batched rates: every `batch`, one `SYNC` call (a batch of keys) sends what
//! was counted here and reads back Redis's state; on a reload or shutdown of the limiter, what
//! is left is sent once more from a task of its own.

use std::sync::Weak;
use std::time::{Duration, Instant};

use super::{Batched, Count, RedisError};
use crate::limit::shared::BATCH;

/// One key's counts as sent: (key, interval, requests, chain).
type Sent = (String, i64, i64, i64);

/// `SYNC`'s arguments: each key's interval, requests and chain.
fn sync_args<'a>(counts: impl Iterator<Item = (&'a i64, &'a i64, &'a i64)>) -> Vec<String> {
    counts
        .flat_map(|(i, h, c)| [i.to_string(), h.to_string(), c.to_string()])
        .collect()
}

impl Batched {
    /// Adds each key's `(interval, requests, chain)` to Redis and reads back its theoretical
    /// arrival time; notes Redis's clock.
    pub(super) async fn sync(
        &self,
        keys: &[String],
        counts: &[(i64, i64, i64)],
    ) -> Result<Vec<i64>, RedisError> {
        let args = sync_args(counts.iter().map(|(i, h, c)| (i, h, c)));
        let sent = self.local();
        let answer: Vec<i64> = self.redis.run(3, keys, &args).await?;
        let received = self.local();
        let (now, tats) = answer
            .split_first()
            .filter(|(_, tats)| tats.len() == keys.len())
            .ok_or_else(|| {
                RedisError::Redis(redis::RedisError::from((
                    redis::ErrorKind::Client,
                    "an unexpected sync answer",
                )))
            })?;
        // Redis read its clock about half way through the round trip.
        self.lock().offset = now - (sent + (received - sent) / 2);
        Ok(tats.to_vec())
    }

    /// Takes what each key has to send (clearing it), forgetting keys idle with nothing to
    /// send. Keys with nothing to send are not sent: one is read again when next used, if its
    /// view is too old by then, so a flush costs what was counted, not what is remembered.
    fn take_counts(&self) -> Vec<Sent> {
        let idle = self.idle();
        let mut state = self.lock();
        state
            .keys
            .retain(|_, c| c.pending > 0 || c.used.elapsed() < idle);
        state
            .keys
            .iter_mut()
            .filter(|(_, c)| c.pending > 0)
            .map(|(key, c)| {
                let sent = (key.clone(), c.interval, c.pending, c.chain);
                (c.pending, c.chain) = (0, 0);
                sent
            })
            .collect()
    }

    /// Sends what was counted since the last flush, and takes Redis's state back.
    pub(super) async fn flush_once(&self) -> Result<(), RedisError> {
        let all = self.take_counts();
        // Nothing to send while Redis is taken for down: ask it the time, to see it back.
        if all.is_empty() && self.lock().failing {
            self.sync(&[], &[]).await?;
            self.lock().failing = false;
        }
        let mut batches = all.chunks(BATCH);
        while let Some(batch) = batches.next() {
            let keys: Vec<String> = batch.iter().map(|s| s.0.clone()).collect();
            let counts: Vec<_> = batch.iter().map(|s| (s.1, s.2, s.3)).collect();
            match self.sync(&keys, &counts).await {
                Ok(tats) => {
                    let mut state = self.lock();
                    for (key, tat) in keys.iter().zip(tats) {
                        if let Some(count) = state.keys.get_mut(key) {
                            // Requests let on while the call ran follow Redis's state.
                            count.follow(tat);
                        }
                    }
                }
                Err(error) => {
                    // Kept for the next flush, this batch and those not sent.
                    self.restore(batch.iter().chain(batches.flatten()));
                    self.lock().failing = true;
                    return Err(error);
                }
            }
        }
        if !all.is_empty() {
            self.lock().failing = false;
        }
        Ok(())
    }

    /// Puts counts that could not be sent back before those counted since.
    fn restore<'a>(&self, sent: impl Iterator<Item = &'a Sent>) {
        let unread = self.unread();
        let mut state = self.lock();
        for (key, interval, pending, chain) in sent {
            let count = state.keys.entry(key.clone()).or_insert(Count {
                interval: *interval,
                tat: *chain,
                pending: 0,
                chain: 0,
                used: Instant::now(),
                // Forgotten meanwhile: no view of Redis's state, read again when next used.
                read: unread,
            });
            // The sent requests came first: those since extend their chain.
            count.chain = (chain + count.pending * count.interval).max(count.chain);
            count.pending += pending;
        }
    }
}

impl Drop for Batched {
    fn drop(&mut self) {
        // A reload that changed the route's limits, or a shutdown: send what is left.
        let left: Vec<Sent> = self.take_counts().into_iter().filter(|s| s.2 > 0).collect();
        if left.is_empty() {
            return;
        }
        let redis = self.redis.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                for batch in left.chunks(BATCH) {
                    let keys: Vec<String> = batch.iter().map(|s| s.0.clone()).collect();
                    let args = sync_args(batch.iter().map(|s| (&s.1, &s.2, &s.3)));
                    if let Err(error) = redis.run::<Vec<i64>>(3, &keys, &args).await {
                        tracing::debug!(%error, "batched counts left by a limiter could not be sent");
                    }
                }
            });
        }
    }
}

/// Flushes every `every` while the limiter lives.
pub(super) async fn flush(batched: Weak<Batched>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(batched) = batched.upgrade() else {
            return;
        };
        if let Err(error) = batched.flush_once().await {
            tracing::debug!(%error, "batched rates could not be sent to redis; kept for the next flush");
        }
    }
}
