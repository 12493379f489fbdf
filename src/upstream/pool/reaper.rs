//! The pool's reaper: a task that runs only while connections are pooled, and closes those
//! idle longer than `pool_idle_timeout`, checked every `pool_idle_timeout`, so that a quiet
//! backend is not held open.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{Idle, Inner};
use crate::sync::lock;

impl Inner {
    /// Starts the reaper unless it runs (or no runtime does: at shutdown, nothing is reaped).
    pub(super) fn reap_later(self: &Arc<Self>, idle: &mut Idle) {
        if idle.reaping || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        idle.reaping = true;
        tokio::spawn(reap(Arc::downgrade(self), self.idle_timeout));
    }

    /// Drops the connections idle for `idle_timeout`; says whether any is left.
    fn reap(&self) -> bool {
        let mut idle = lock(&self.idle);
        let timeout = self.idle_timeout;
        idle.http1
            .retain(|(conn, since)| !conn.sender.is_closed() && since.elapsed() < timeout);
        idle.wire
            .retain_mut(|(conn, since)| since.elapsed() < timeout && conn.is_quiet());
        if idle
            .http2
            .as_ref()
            .is_some_and(|(sender, used)| sender.is_closed() || used.elapsed() >= timeout)
        {
            idle.http2 = None;
        }
        let left = !idle.http1.is_empty() || !idle.wire.is_empty() || idle.http2.is_some();
        idle.reaping = left;
        left
    }
}

/// Every `every`, drops the pool's connections idle that long, until none is left or the pool
/// is gone.
async fn reap(pool: Weak<Inner>, every: Duration) {
    // Dropped mid-way (its runtime shut down), it clears `reaping`, so that the next return
    // starts another; ending on its own, `reap` has cleared it under the lock.
    let mut cancelled = ReaperCancelled(Some(pool.clone()));
    let every = every.max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        match pool.upgrade() {
            Some(pool) if pool.reap() => {}
            _ => {
                cancelled.0 = None;
                return;
            }
        }
    }
}

/// Clears `reaping` if the reaper task is dropped before it ends.
struct ReaperCancelled(Option<Weak<Inner>>);

impl Drop for ReaperCancelled {
    fn drop(&mut self) {
        if let Some(pool) = self.0.as_ref().and_then(Weak::upgrade) {
            lock(&pool.idle).reaping = false;
        }
    }
}
