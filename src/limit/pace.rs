//! Pacing (`limits.pace`): a heavy client's response bytes are slowed to `bytes_per_second`
//! instead of the client being refused, per client address, per limits key or for the whole
//! route. A byte bucket (GCRA, governor, one second of burst) is spent as each frame goes out;
//! a frame that finds it empty waits in [`PacedBody`] — the one frame held, nothing more read
//! from the backend or the database meanwhile, so backpressure reaches them and a paced
//! response holds no more memory than an unpaced one.
//!
//! Frames go out in pieces of at most a second's bytes and 16 KiB (a `Bytes` split, no
//! copy). Keyed buckets are bounded by the route's `max_clients` as the rate limiters' are
//! ([`CappedStore`]).

use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use http_body::{Body as HttpBody, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::Sleep;

use super::ClientKey;
use super::config::{Pace, PaceScope};
use super::rate::{AtCap, CappedStore, KeyCap};
use crate::{Body, BoxError};

/// The largest piece a paced frame goes out in (16 KiB).
const MAX_PIECE: usize = 16 * 1024;

/// The shortest refill period a bucket's cell gets, in nanoseconds. governor keeps a cell's
/// period in whole nanoseconds, so a byte a cell would run 512 MiB/s at 1e9 B/s (the period
/// 1.86 ns rounded down to 1). A cell of `ceil(bytes_per_second / 1e6)` bytes has a period of
/// at least 1 µs, which rounding moves by at most 0.1%.
const MIN_PERIOD_NANOS: u64 = 1_000;

/// The buckets' clock: tokio's, so a paced body's waits and its buckets agree, also under a
/// paused test clock.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TokioClock;

impl Clock for TokioClock {
    type Instant = std::time::Instant;

    fn now(&self) -> std::time::Instant {
        tokio::time::Instant::now().into_std()
    }
}

/// No middleware, on [`TokioClock`]'s instants.
type Plain = NoOpMiddleware<std::time::Instant>;

/// A route's byte buckets.
#[derive(Debug)]
pub(crate) struct Pacer {
    pace: Pace,
    buckets: Buckets,
    clock: TokioClock,
    /// Bytes a bucket cell stands for (1 up to 1 MB a second).
    cell: u64,
}

#[derive(Debug)]
enum Buckets {
    /// One per client address or limits key, at most `max_clients`.
    /// A new client went to the overflow bucket at the cap: full buckets are forgotten then
    /// (at most once a second), not only by the housekeeping timer.
    Keyed(
        RateLimiter<ClientKey, CappedStore, TokioClock, Plain>,
        AtCap,
    ),
    /// One for the route.
    Route(RateLimiter<NotKeyed, InMemoryState, TokioClock, Plain>),
}

impl Pacer {
    /// Buckets for `pace`, at most `max_clients` of them when keyed.
    /// Keyed buckets capped by `cap`.
    pub(crate) fn new(pace: Pace, cap: &KeyCap) -> Self {
        let (quota, cell) = quota(pace.bytes_per_second);
        let clock = TokioClock;
        let buckets = match pace.per {
            PaceScope::Route => Buckets::Route(RateLimiter::direct_with_clock(quota, clock)),
            PaceScope::Client | PaceScope::Key => {
                let at_cap = AtCap::new(cap);
                let store = at_cap.store();
                Buckets::Keyed(RateLimiter::new(quota, store, clock), at_cap)
            }
        };
        Self {
            pace,
            buckets,
            clock,
            cell,
        }
    }

    /// Which bucket a request spends from: its limits `key`, or its address's.
    pub(crate) fn scope(&self, key: ClientKey) -> ClientKey {
        match self.pace.per {
            PaceScope::Client => key.of_address(),
            PaceScope::Key | PaceScope::Route => key,
        }
    }

    /// Spends at least `bytes` (at most a second's) from `key`'s bucket, in whole cells: the
    /// bytes paid for when they may go now, else how long to wait before asking again.
    fn spend(&self, key: &ClientKey, bytes: usize) -> Result<usize, Duration> {
        let cells = (bytes as u64).div_ceil(self.cell);
        let n =
            NonZeroU32::new(u32::try_from(cells).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN);
        let checked = match &self.buckets {
            Buckets::Keyed(limiter, at_cap) => {
                let checked = limiter.check_key_n(key, n);
                at_cap.tidy_if_due();
                checked
            }
            Buckets::Route(limiter) => limiter.check_n(n),
        };
        match checked {
            Ok(Ok(())) => Ok(usize::try_from(u64::from(n.get()) * self.cell).unwrap_or(usize::MAX)),
            Ok(Err(not_until)) => Err(not_until.wait_time_from(self.clock.now())),
            // More than the burst: never asked (frames are cut to a second's bytes first).
            Err(_) => Err(Duration::from_secs(1)),
        }
    }

    /// Forgets keyed buckets that are full again (they lose nothing).
    pub(crate) fn housekeeping(&self) {
        if let Buckets::Keyed(limiter, _) = &self.buckets {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Keyed buckets held now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        match &self.buckets {
            Buckets::Keyed(limiter, _) => limiter.len(),
            Buckets::Route(_) => 1,
        }
    }

    /// The most bytes one frame may carry: a second's, at most [`MAX_PIECE`], so a large
    /// frame does not wait for a whole second's bytes while small ones take them.
    fn piece(&self) -> usize {
        usize::try_from(self.pace.bytes_per_second.get())
            .unwrap_or(usize::MAX)
            .min(MAX_PIECE)
    }
}

/// A bucket of `bytes_per_second` with a second of burst, in cells of at least a byte whose
/// period rounding cannot skew (see [`MIN_PERIOD_NANOS`]), and the bytes a cell stands for.
fn quota(bytes_per_second: NonZeroU32) -> (Quota, u64) {
    let rate = u64::from(bytes_per_second.get());
    let cell = (rate * MIN_PERIOD_NANOS).div_ceil(1_000_000_000).max(1);
    let cells = u32::try_from(rate.div_ceil(cell)).unwrap_or(u32::MAX);
    let burst = NonZeroU32::new(cells).unwrap_or(NonZeroU32::MIN);
    let period = Duration::from_nanos(cell * 1_000_000_000 / rate);
    let quota = Quota::with_period(period).map_or_else(
        || Quota::per_second(bytes_per_second),
        |quota| quota.allow_burst(burst),
    );
    (quota, cell)
}

pin_project! {
    /// A response body paced by a [`Pacer`]: each data frame waits for its bytes.
    pub(crate) struct PacedBody {
        #[pin]
        inner: Body,
        pacer: Arc<Pacer>,
        key: ClientKey,
        // A data frame (or what is left of it) waiting for its bytes.
        held: Option<Bytes>,
        // Bytes paid for (a cell's remainder) and not yet sent: less than a cell.
        credit: usize,
        #[pin]
        wait: Option<Sleep>,
        // Called once, the first time this body waits (the decision is counted).
        on_wait: Option<Box<dyn FnOnce() + Send + Sync>>,
    }
}

impl PacedBody {
    /// `inner` paced from `key`'s bucket of `pacer`; `on_wait` runs the first time it waits.
    pub(crate) fn new(
        inner: Body,
        pacer: Arc<Pacer>,
        key: ClientKey,
        on_wait: Box<dyn FnOnce() + Send + Sync>,
    ) -> Self {
        Self {
            inner,
            pacer,
            key,
            held: None,
            credit: 0,
            wait: None,
            on_wait: Some(on_wait),
        }
    }
}

impl HttpBody for PacedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        loop {
            if let Some(data) = this.held.as_mut() {
                if let Some(sleep) = this.wait.as_mut().as_pin_mut() {
                    ready!(sleep.poll(cx));
                    this.wait.set(None);
                }
                let n = data.len().min(this.pacer.piece());
                if n == 0 {
                    *this.held = None;
                    continue;
                }
                let paid = match n.checked_sub(*this.credit) {
                    None | Some(0) => Ok(0),
                    Some(owed) => this.pacer.spend(this.key, owed),
                };
                match paid {
                    Ok(paid) => {
                        *this.credit = (*this.credit + paid).saturating_sub(n);
                        let piece = data.split_to(n);
                        if data.is_empty() {
                            *this.held = None;
                        }
                        return Poll::Ready(Some(Ok(Frame::data(piece))));
                    }
                    Err(wait) => {
                        if let Some(first) = this.on_wait.take() {
                            first();
                        }
                        this.wait.set(Some(tokio::time::sleep(wait)));
                    }
                }
                continue;
            }
            let Some(frame) = ready!(this.inner.as_mut().poll_frame(cx)) else {
                return Poll::Ready(None);
            };
            match frame.map(Frame::into_data) {
                Ok(Ok(data)) => *this.held = Some(data),
                // Trailers pass at once.
                Ok(Err(other)) => return Poll::Ready(Some(Ok(other))),
                Err(error) => return Poll::Ready(Some(Err(error))),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        // What the backend has yet to send, and the frame held here.
        let held = self.held.as_ref().map_or(0, |b| b.len() as u64);
        let inner = self.inner.size_hint();
        match inner.exact() {
            Some(exact) => SizeHint::with_exact(exact + held),
            None => {
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower() + held);
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper + held);
                }
                hint
            }
        }
    }
}

#[cfg(test)]
mod tests;
