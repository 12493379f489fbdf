//! Log lines a client can cause at will, throttled.
//!
//! A refused head or a failed TLS handshake is worth a line at `info` (a scanner, a client
//! with the wrong certificate), but one line per connection lets anyone who can open
//! connections write the log as fast as they can connect. Each kind is counted every time in
//! `pagegate_protections_total`; the log gets at most [`LINES_PER_SECOND`] of them a second,
//! and the next line written says how many were left out before it.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::clock::MonotonicClock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// Lines a second a listener writes about what its clients did wrong (a burst of as many).
pub(crate) const LINES_PER_SECOND: NonZeroU32 = NonZeroU32::new(10).expect("not zero");

/// Lets through at most [`LINES_PER_SECOND`] lines a second, and counts the others.
#[derive(Debug)]
pub(crate) struct Throttle {
    /// On the standard monotonic clock: governor's default (quanta) calibrates the CPU's clock
    /// when first made, work every start would pay for a few log lines.
    lines: RateLimiter<NotKeyed, InMemoryState, MonotonicClock, NoOpMiddleware<std::time::Instant>>,
    left_out: AtomicU64,
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new(LINES_PER_SECOND)
    }
}

impl Throttle {
    /// At most `per_second` lines a second, in bursts of as many.
    pub(crate) fn new(per_second: NonZeroU32) -> Self {
        Self {
            lines: RateLimiter::direct_with_clock(Quota::per_second(per_second), MonotonicClock),
            left_out: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when a line may be written, `n` the lines left out since the last one
    /// written; `None` when this one is left out (and counted).
    pub(crate) fn admit(&self) -> Option<u64> {
        if self.lines.check().is_ok() {
            Some(self.left_out.swap(0, Ordering::Relaxed))
        } else {
            self.left_out.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_past_the_quota_is_counted_and_reported_with_the_next_line() {
        let throttle = Throttle::new(NonZeroU32::new(3).expect("not zero"));
        let admitted: Vec<Option<u64>> = (0..8).map(|_| throttle.admit()).collect();
        assert_eq!(admitted[..3], [Some(0), Some(0), Some(0)]);
        assert!(admitted[3..].iter().all(Option::is_none), "{admitted:?}");
        // governor's clock is the real one: a third of a second frees the next line.
        std::thread::sleep(std::time::Duration::from_millis(400));
        assert_eq!(throttle.admit(), Some(5), "the five left out are reported");
    }
}
