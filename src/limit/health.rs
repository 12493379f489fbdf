//! [`Health`]: whether a shared store (Redis, the rate-limit service) is failing, so that an
//! incident is logged twice — when it starts and when it ends — not once a request.

use std::sync::atomic::{AtomicBool, Ordering};

/// A store's state: failing or not.
#[derive(Debug, Default)]
pub(crate) struct Health(AtomicBool);

impl Health {
    /// Notes one answer (`failed` or not); `true` when it changes the state (log it then).
    pub(crate) fn changed(&self, failed: bool) -> bool {
        self.0.swap(failed, Ordering::Relaxed) != failed
    }
}

#[cfg(test)]
mod tests;
