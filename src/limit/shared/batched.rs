//! `limits.batch`: shared rates counted in this process and sent to Redis together, one call
//! for the route's keys each `batch` (Limitador's `redis_cached` mode), instead of one round
//! trip a request.
//!
//! Each key keeps a local view of its GCRA state: the theoretical arrival time Redis last
//! reported, advanced by the requests this process let on since. A request is decided on that
//! view, with no call. The flush ([`flush`]) sends, per key, how many requests were let on and
//! the arrival time their own sequence reaches (`chain`: GCRA over those requests alone), and
//! Redis keeps the later of its state advanced by them and that chain — exactly what GCRA over
//! the requests would give, so a lone replica is exact — and brings back what the other
//! replicas counted. A request let on is never refused there: the long run is exact (an
//! overdraft is paid back by later refusals), and the error is bounded: while flushes succeed,
//! the replicas together let on at most `(replicas − 1) × (burst + rate × 3 × batch)` requests
//! more than the limit in any window, what the others could let on before this process heard
//! of it (their flush, then a view up to two batches old).
//!
//! A flush sends only the keys with requests to count, and reads back their state: its cost
//! follows the requests, not the keys a client rotating them made this process remember. A
//! key's view is used for at most two batches and a call's time (`redis.timeout`) after
//! Redis's state was read for it; an older one, or a key this process has no view of (new, or
//! forgotten), is read from Redis first, in one round trip. When that read fails, or the last
//! flush did (then at once, with no call), `on_redis_error` applies.
//!
//! Memory: at most `max_clients` keys; a key idle for ten batches (at least 10 s) with nothing
//! to send is forgotten (Redis has its state). At the cap, at most once a second, keys whose
//! bucket is full or, failing those, the least recently used with nothing to send are
//! forgotten (`pagegate_limit_evictions_total`); a new key that finds no room takes the exact
//! path.
//!
//! The keys and their state are the exact mode's: replicas in either mode share one budget.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{Redis, RedisError};

mod flush;

/// One key's view.
#[derive(Debug)]
struct Count {
    /// Emission interval (µs).
    interval: i64,
    /// Theoretical arrival time in Redis's clock (µs): Redis's at the last flush, advanced by
    /// this process's requests since.
    tat: i64,
    /// Requests let on here and not sent yet.
    pending: i64,
    /// The arrival time GCRA over those requests alone reaches (0: none).
    chain: i64,
    used: Instant,
    /// When Redis's state was last read for this key (by a flush or a read of its own).
    read: Instant,
}

impl Count {
    /// Takes Redis's theoretical arrival time `tat`, advanced by the requests let on here and
    /// not sent yet (their own chain at least).
    fn follow(&mut self, tat: i64) {
        self.tat = (tat + self.pending * self.interval).max(self.chain);
        self.read = Instant::now();
    }
}

#[derive(Debug)]
struct State {
    keys: HashMap<String, Count>,
    /// Redis's clock minus this process's (µs), from the last answer.
    offset: i64,
    /// The last flush failed: Redis is taken for down until one succeeds.
    failing: bool,
    /// When room was last made at the cap: a scan of every key, at most once a second.
    cleaned: Option<Instant>,
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
/// `{1, i, wait}`), or that the request must take the exact path (no room, or no view, for
/// its key).
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
                failing: false,
                cleaned: None,
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

    /// How long a key's view may be used after its state was read: two batches and a call's
    /// time (a flush of many keys reads the last ones later). A key in use is read that often
    /// by the flushes that send its counts.
    fn window(&self) -> Duration {
        self.every * 2 + self.redis.config.timeout
    }

    /// Whether a key's view is recent enough to decide on.
    fn fresh(&self, count: &Count) -> bool {
        count.read.elapsed() <= self.window()
    }

    /// An instant at which a view is already too old: a view not read from Redis.
    fn unread(&self) -> Instant {
        let now = Instant::now();
        now.checked_sub(self.window() * 2).unwrap_or(now)
    }

    /// How long a key with nothing to send is kept unused: ten batches, at least 10 s.
    fn idle(&self) -> Duration {
        Duration::from_secs(10).max(self.every * 10)
    }

    /// Decides a request on the rate keys `keys` (the exact call's, with `rates` their
    /// interval and tolerance in µs), reading unknown keys from Redis first. `evicted` counts keys
    /// forgotten at the cap.
    pub(crate) async fn check(
        self: &Arc<Self>,
        keys: &[String],
        rates: &[(i64, i64)],
        evicted: impl Fn(u64),
    ) -> Result<Checked, RedisError> {
        self.start();
        let missing: Vec<String> = {
            let state = self.lock();
            keys.iter()
                .filter(|k| state.keys.get(*k).is_none_or(|c| !self.fresh(c)))
                .cloned()
                .collect()
        };
        if !missing.is_empty() {
            if self.lock().failing {
                return Err(RedisError::Stale);
            }
            let zeros = vec![(1, 0, 0); missing.len()];
            let answer = self.sync(&missing, &zeros).await?;
            let mut state = self.lock();
            let mut forgot = 0;
            for (key, tat) in missing.into_iter().zip(&answer) {
                if let Some(count) = state.keys.get_mut(&key) {
                    count.follow(*tat);
                    continue;
                }
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
                    chain: 0,
                    used: Instant::now(),
                    read: Instant::now(),
                };
                state.keys.insert(key, count);
            }
            evicted(forgot);
        }
        let mut state = self.lock();
        Ok(self
            .decide(&mut state, keys, rates)
            .map_or(Checked::Exact, Checked::Answer))
    }

    /// GCRA on the local view, all or nothing as the exact script: see `scripts::TAKE`.
    /// `None` when a key has no view (forgotten since it was read): the exact path decides.
    fn decide(&self, state: &mut State, keys: &[String], rates: &[(i64, i64)]) -> Option<Vec<i64>> {
        let now = self.local() + state.offset;
        let mut tats = Vec::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            let (interval, tolerance) = rates.get(i).copied()?;
            let interval = interval.max(1);
            let tat = state.keys.get(key)?.tat.max(now);
            if tat - tolerance > now {
                return Some(vec![1, i as i64 + 1, tat - tolerance - now]);
            }
            tats.push((interval, tolerance, tat + interval));
        }
        let mut out = vec![0];
        for (key, (interval, tolerance, tat)) in keys.iter().zip(tats) {
            let count = state.keys.get_mut(key)?;
            count.interval = interval;
            count.tat = tat;
            count.pending += 1;
            count.chain = count.chain.max(now) + interval;
            count.used = Instant::now();
            out.push((now + tolerance - tat).div_euclid(interval) + 1);
            out.push(tat - now);
        }
        Some(out)
    }

    /// Forgets keys at the cap: every full bucket with nothing to send, or else the least
    /// recently used key with nothing to send. How many, or `None` when none can go — or when
    /// the last scan was less than a second ago: a client rotating keys costs each new key a
    /// round trip on the exact path, never a scan of every key.
    fn make_room(&self, state: &mut State) -> Option<u64> {
        if state
            .cleaned
            .is_some_and(|at| at.elapsed() < Duration::from_secs(1))
        {
            return None;
        }
        state.cleaned = Some(Instant::now());
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

    /// Starts the flushing task (once; the first check runs on a Tokio runtime).
    fn start(self: &Arc<Self>) {
        if !self.started.swap(true, Ordering::Relaxed) {
            tokio::spawn(flush::flush(Arc::downgrade(self), self.every));
        }
    }
}
