//! Small helpers several parts share: a lock that outlives a panic elsewhere (the connection
//! registry, the held-page budget), a millisecond clock whose readings fit in an atomic, and
//! a gate that lets one caller through at most once an interval without a lock ([`Interval`]:
//! the key cap's wake of housekeeping, a streamed answer's interim cost charges).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// Locks `mutex`, poisoned or not: callers keep nothing half-updated behind a lock, so a
/// panic in another holder leaves a value as good as before.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Milliseconds since it was made, stored in `AtomicU64`s where 0 means "not waiting".
#[derive(Debug, Clone, Copy)]
pub(crate) struct Millis {
    epoch: Instant,
}

impl Millis {
    pub(crate) fn new() -> Self {
        Self {
            epoch: Instant::now(),
        }
    }

    /// Milliseconds since the epoch, never 0.
    pub(crate) fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX) + 1
    }
}

/// Lets one caller through at most once every `every`, lock-free: of the callers that find it
/// due, the one that moves the next due time on passes. A clock read a call.
#[derive(Debug)]
pub(crate) struct Interval {
    clock: Millis,
    every_ms: u64,
    /// When it is next due, on `clock`.
    next_ms: AtomicU64,
}

impl Interval {
    /// Due `every` from now, or at once with `at_once`; `every` is at least a millisecond.
    pub(crate) fn new(every: Duration, at_once: bool) -> Self {
        let every_ms = u64::try_from(every.as_millis()).unwrap_or(u64::MAX).max(1);
        let clock = Millis::new();
        let first = if at_once {
            0
        } else {
            clock.now().saturating_add(every_ms)
        };
        Self {
            clock,
            every_ms,
            next_ms: AtomicU64::new(first),
        }
    }

    /// Whether this caller passes: it is due, and no other caller passed since it became due.
    pub(crate) fn pass(&self) -> bool {
        let now = self.clock.now();
        let due = self.next_ms.load(Ordering::Relaxed);
        now >= due
            && self
                .next_ms
                .compare_exchange(
                    due,
                    now.saturating_add(self.every_ms),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_interval_lets_one_caller_through_each_time_it_is_due() {
        let later = Interval::new(Duration::from_secs(1), false);
        let at_once = Interval::new(Duration::from_secs(1), true);
        assert!(!later.pass(), "not due before a second");
        assert!(at_once.pass(), "due at once");
        assert!(!at_once.pass(), "one caller only");
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(!later.pass() && !at_once.pass());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(later.pass() && at_once.pass());
        assert!(!later.pass() && !at_once.pass());
        // Late callers move the next due time from when they passed, not from when it was due.
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert!(later.pass());
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(!later.pass());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(later.pass());
    }
}
