//! Two small helpers the connection registry and the held-page budget share: a lock that
//! outlives a panic elsewhere, and a millisecond clock whose readings fit in an atomic.

use std::sync::{Mutex, MutexGuard, PoisonError};

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
