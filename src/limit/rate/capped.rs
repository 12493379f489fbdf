//! A keyed state store with a cap on its keys ([`CappedStore`]), for the per-client rate and
//! pace buckets: at most `max_clients` keys; while the cap is reached, new clients share one
//! overflow bucket (still limited together, never a bypass, never unbounded memory), its uses
//! counted, and the route's housekeeping is woken (at most once a second) to forget the
//! buckets that are full again — a pass that walks every key, so it runs off the request path.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use governor::nanos::Nanos;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::{InMemoryState, NotKeyed, StateStore};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::Notify;

use crate::limit::ClientKey;
use crate::sync::Interval;

/// A route's `max_clients` and what happens at it: uses of the shared bucket counted in
/// `overflow`, and the route's housekeeping woken through `tidy`.
#[derive(Debug, Clone)]
pub(crate) struct KeyCap {
    pub(crate) max: NonZeroUsize,
    pub(crate) overflow: Counter,
    pub(crate) tidy: Arc<Tidy>,
}

/// The route's housekeeping call: woken at most once a second for all its keyed maps.
#[derive(Debug)]
pub(crate) struct Tidy {
    pub(crate) notify: Notify,
    /// Once a second (the first may come at once).
    wake: Interval,
}

impl Default for Tidy {
    fn default() -> Self {
        Self {
            notify: Notify::new(),
            wake: Interval::new(Duration::from_secs(1), true),
        }
    }
}

impl KeyCap {
    /// `max` keys, counted and woken nowhere anyone looks (tests).
    #[cfg(test)]
    pub(crate) fn detached(max: NonZeroUsize) -> Self {
        Self {
            max,
            overflow: Counter::default(),
            tidy: Arc::default(),
        }
    }
}

/// Whether the [`CappedStore`]s made by [`AtCap::store`] have sent a new client to their
/// overflow bucket, and so a cleaning is due: at most once a second, as a pass walks every
/// key. Shared with the limiter's owner, since a governor limiter does not lend out its store.
#[derive(Debug)]
pub(crate) struct AtCap {
    state: Arc<CapState>,
    max: NonZeroUsize,
    tidy: Arc<Tidy>,
}

impl CapState {
    /// A new client was sent to the shared bucket: counted, and a cleaning is due.
    fn overflowed(&self) {
        self.full.store(true, Ordering::Relaxed);
        self.overflow.inc();
    }
}

/// What a [`CappedStore`] tells its [`AtCap`].
#[derive(Debug)]
struct CapState {
    /// A new client went to the overflow bucket since the last cleaning.
    full: AtomicBool,
    /// Decisions made on the overflow bucket (`pagegate_limit_overflow_total`).
    overflow: Counter,
}

impl AtCap {
    /// The gate of stores capped at `cap`.
    pub(crate) fn new(cap: &KeyCap) -> Self {
        Self {
            state: Arc::new(CapState {
                full: AtomicBool::new(false),
                overflow: cap.overflow.clone(),
            }),
            max: cap.max,
            tidy: Arc::clone(&cap.tidy),
        }
    }

    /// A store of at most `max_clients` keys that reports here when it is full.
    pub(crate) fn store(&self) -> CappedStore {
        CappedStore {
            map: DashMapStateStore::default(),
            overflow: InMemoryState::default(),
            cap: self.max.get(),
            state: Arc::clone(&self.state),
        }
    }

    /// A new client of a map kept beside the stores (quota levels) went to its shared
    /// state: counted, and a cleaning is due.
    pub(crate) fn overflowed(&self) {
        self.state.overflowed();
    }

    /// Wakes the route's housekeeping when a store was full and it was not woken in the last
    /// second for that.
    pub(crate) fn tidy_if_due(&self) {
        if self.due() {
            self.tidy.notify.notify_one();
        }
    }

    /// Whether a cleaning is due now: a store was full, and none was asked for in the last
    /// second (the one caller that gets `true` asks).
    fn due(&self) -> bool {
        if !self.state.full.load(Ordering::Relaxed) || !self.tidy.wake.pass() {
            return false;
        }
        self.state.full.store(false, Ordering::Relaxed);
        true
    }
}

/// A keyed state store with a cap on its keys; see the module docs.
#[derive(Debug)]
pub(crate) struct CappedStore {
    map: DashMapStateStore<ClientKey>,
    /// The bucket new clients share while the map is full.
    overflow: InMemoryState,
    cap: usize,
    /// Told when a new client is sent to the overflow bucket (a cleaning is due, and the
    /// decision is counted). Shared with the [`AtCap`] that made the store.
    state: Arc<CapState>,
}

impl StateStore for CappedStore {
    type Key = ClientKey;

    fn measure_and_replace<T, F, E>(&self, key: &ClientKey, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        if self.map.contains_key(key) || self.map.len() < self.cap {
            return self.map.measure_and_replace(key, f);
        }
        self.state.overflowed();
        self.overflow.measure_and_replace(&NotKeyed::NonKey, f)
    }
}

impl ShrinkableKeyedStateStore<ClientKey> for CappedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        self.map.retain_recent(drop_below);
    }

    fn shrink_to_fit(&self) {
        self.map.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
