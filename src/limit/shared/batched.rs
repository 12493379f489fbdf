//! `limits.batch`: shared rates counted in this process and sent to Redis together, one call
//! for every key of the route each `batch` (Limitador's `redis_cached` mode), instead of one
//! round trip a request.
//!
//! Each key keeps a local view of its GCRA state: the theoretical arrival time Redis last
//! reported, plus the requests this process let on since. A request is decided on that view,
//! with no call; the flush adds the requests counted here to Redis's state (a request already
//! let on is never refused there) and brings back what the other replicas counted. So the long
//! run is exact — every request let on is counted, and an overdraft is paid back by later
//! refusals — and the error is bounded: in any window the replicas together let on at most
//! `(replicas − 1) × (burst + rate × batch)` requests more than the limit, what the others
//! could let on before this process heard of it. A key this process has no view of yet (new,
//! or forgotten) is read from Redis first, in one round trip.
//!
//! Memory: at most `max_clients` keys. At the cap, keys whose bucket is full (they lose
//! nothing) or, failing those, the least recently used with nothing left to send are
//! forgotten (`pagegate_limit_evictions_total`); when every key still has counts to send, the
//! request takes the exact path.
//!
//! The keys and their state are the exact mode's: replicas in either mode share one budget.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use super::{Redis, RedisError};

/// One key's view.
#[derive(Debug)]
struct Count {
    /// Emission interval (µs).
    interval: i64,
    /// Theoretical arrival time in Redis's clock (µs): Redis's at the last flush, plus this
    /// process's requests since.
    tat: i64,
    /// Requests let on here and not sent yet.
    pending: i64,
    used: Instant,
}

#[derive(Debug)]
struct State {
    keys: HashMap<String, Count>,
    /// Redis's clock minus this process's (µs), from the last answer.
    offset: i64,
    /// When Redis last answered.
    synced: Option<Instant>,
}

/// The batched rates of one route.
#[derive(Debug)]
pub(crate) struct Batched {
    redis: Redis,
    every: Duration,
    cap: usize,
    epoch: Instant,
    state: Mutex<State>,
    started: AtomicBool,
}

/// What [`Batched::check`] decided: the exact path's answer (`{0, remaining, reset, …}` or
/// `{1, i, wait}`), or that the request must take the exact path (no room for its key).
pub(crate) enum Checked {
    Answer(Vec<i64>),
    Exact,
}

impl Batched {
    pub(crate) fn new(redis: Redis, every: Duration, cap: usize) -> Arc<Self> {
        Arc::new(Self {
            redis,
            every,
            cap,
            epoch: Instant::now(),
            state: Mutex::new(State {
                keys: HashMap::new(),
                offset: 0,
                synced: None,
            }),
            started: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// This process's clock (µs since the limiter was made).
    fn local(&self) -> i64 {
        i64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(i64::MAX)
    }

    /// Whether the view is recent enough to decide on: Redis answered within three flushes
    /// (and at least a second); otherwise Redis is failing and `on_redis_error` applies.
    fn fresh(&self, state: &State) -> bool {
        let stale = (self.every * 3).max(Duration::from_secs(1));
        state.synced.is_some_and(|at| at.elapsed() <= stale)
    }

    /// Decides a request on the rate keys `keys` (the exact call's, with `args[1..]` their
    /// interval and tolerance), reading unknown keys from Redis first. `evicted` counts keys
    /// forgotten at the cap.
    pub(crate) async fn check(
        self: &Arc<Self>,
        keys: &[String],
        args: &[String],
        evicted: impl Fn(u64),
    ) -> Result<Checked, RedisError> {
        self.start();
        let missing: Vec<String> = {
            let state = self.lock();
            keys.iter()
                .filter(|k| !state.keys.contains_key(*k))
                .cloned()
                .collect()
        };
        if !missing.is_empty() {
            let intervals = vec![1; missing.len()];
            let answer = self
                .sync(&missing, &intervals, &vec![0; missing.len()])
                .await?;
            let mut state = self.lock();
            let mut forgot = 0;
            for (key, tat) in missing.into_iter().zip(&answer) {
                if !state.keys.contains_key(&key) {
                    if state.keys.len() >= self.cap {
                        let Some(n) = self.make_room(&mut state) else {
                            evicted(forgot);
                            return Ok(Checked::Exact);
                        };
                        forgot += n;
                    }
                    let count = Count {
                        interval: 1,
                        tat: *tat,
                        pending: 0,
                        used: Instant::now(),
                    };
                    state.keys.insert(key, count);
                }
            }
            evicted(forgot);
        }
        let mut state = self.lock();
        if !self.fresh(&state) {
            return Err(RedisError::Stale);
        }
        Ok(Checked::Answer(self.decide(&mut state, keys, args)))
    }

    /// GCRA on the local view, all or nothing as the exact script: see `scripts::TAKE`.
    fn decide(&self, state: &mut State, keys: &[String], args: &[String]) -> Vec<i64> {
        let now = self.local() + state.offset;
        let arg = |i: usize| args.get(i).and_then(|a| a.parse::<i64>().ok()).unwrap_or(1);
        let mut tats = Vec::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            let (interval, tolerance) = (arg(2 * i + 1), arg(2 * i + 2));
            let tat = state.keys.get(key).map_or(now, |c| c.tat).max(now);
            if tat - tolerance > now {
                return vec![1, i as i64 + 1, tat - tolerance - now];
            }
            tats.push((interval, tolerance, tat + interval));
        }
        let mut out = vec![0];
        for (key, (interval, tolerance, tat)) in keys.iter().zip(tats) {
            // A key forgotten since it was read (by another request's room-making) is kept
            // again: the request is counted whatever happens, the next flush corrects its view.
            let count = state.keys.entry(key.clone()).or_insert(Count {
                interval,
                tat: now,
                pending: 0,
                used: Instant::now(),
            });
            count.interval = interval;
            count.tat = tat;
            count.pending += 1;
            count.used = Instant::now();
            out.push((now + tolerance - tat).div_euclid(interval) + 1);
            out.push(tat - now);
        }
        out
    }

    /// Forgets keys at the cap: every full bucket with nothing to send, or else the least
    /// recently used key with nothing to send. How many, or `None` when none can go.
    fn make_room(&self, state: &mut State) -> Option<u64> {
        let now = self.local() + state.offset;
        let before = state.keys.len();
        state.keys.retain(|_, c| c.pending > 0 || c.tat > now);
        if state.keys.len() < before {
            return Some((before - state.keys.len()) as u64);
        }
        let oldest = state
            .keys
            .iter()
            .filter(|(_, c)| c.pending == 0)
            .min_by_key(|(_, c)| c.used)
            .map(|(k, _)| k.clone())?;
        state.keys.remove(&oldest);
        Some(1)
    }

    /// Adds `hits` (at `intervals`) to `keys` in Redis and reads back their state; notes
    /// Redis's clock. The theoretical arrival times, one a key.
    async fn sync(
        &self,
        keys: &[String],
        intervals: &[i64],
        hits: &[i64],
    ) -> Result<Vec<i64>, RedisError> {
        let args: Vec<String> = intervals
            .iter()
            .zip(hits)
            .flat_map(|(i, h)| [i.to_string(), h.to_string()])
            .collect();
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
        let mut state = self.lock();
        // Redis read its clock about half way through the round trip.
        state.offset = now - (sent + (received - sent) / 2);
        state.synced = Some(Instant::now());
        Ok(tats.to_vec())
    }

    /// Starts the flushing task (once; the first check runs on a Tokio runtime).
    fn start(self: &Arc<Self>) {
        if !self.started.swap(true, Ordering::Relaxed) {
            tokio::spawn(flush(Arc::downgrade(self), self.every));
        }
    }

    /// Sends what was counted since the last flush, and takes Redis's state back.
    async fn flush_once(&self) -> Result<(), RedisError> {
        let (keys, intervals, hits): (Vec<String>, Vec<i64>, Vec<i64>) = {
            let mut state = self.lock();
            let now = self.local() + state.offset;
            // Idle keys with full buckets cost memory and calls for nothing.
            let idle = Duration::from_secs(10).max(self.every * 10);
            state
                .keys
                .retain(|_, c| c.pending > 0 || c.tat > now || c.used.elapsed() < idle);
            let mut out = (Vec::new(), Vec::new(), Vec::new());
            for (key, count) in &state.keys {
                out.0.push(key.clone());
                out.1.push(count.interval);
                out.2.push(count.pending);
            }
            out
        };
        if keys.is_empty() {
            return Ok(());
        }
        for ((keys, intervals), hits) in keys
            .chunks(super::BATCH)
            .zip(intervals.chunks(super::BATCH))
            .zip(hits.chunks(super::BATCH))
        {
            let tats = self.sync(keys, intervals, hits).await?;
            let mut state = self.lock();
            for ((key, sent), tat) in keys.iter().zip(hits).zip(tats) {
                if let Some(count) = state.keys.get_mut(key) {
                    // Requests let on while the call ran are still to be sent.
                    count.pending -= sent;
                    count.tat = tat + count.pending * count.interval;
                }
            }
        }
        Ok(())
    }
}

/// Flushes every `every` while the limiter lives.
async fn flush(batched: Weak<Batched>, every: Duration) {
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
