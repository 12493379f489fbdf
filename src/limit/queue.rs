//! Places in a route's queue for a concurrency slot, in this process: at most the queue's
//! `size` waiting, and at most `concurrency.per_client` of them for one client key (its tenant
//! class's cap, or the default's for a class without one), so one
//! client's waiters cannot fill the queue everyone else waits in (its next waiter is refused at
//! once, as over its own limit). Used by the local slots and by the shared (Redis) ones, whose
//! queue is a poll within these places.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::ClientKey;

/// The queue's places.
#[derive(Debug)]
pub(crate) struct Places {
    size: u32,
    /// Each tenant class's cap on one client's places (the default's first).
    per_client: Vec<Option<u32>>,
    waiting: Mutex<Tally>,
}

/// How many of something are held, in all and per client key: requests in flight, places in
/// a queue.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    total: u32,
    by_key: HashMap<ClientKey, u32>,
}

/// Which cap of a [`Tally`] is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Capped {
    /// The total's.
    Total(u32),
    /// The client's.
    Client(u32),
}

impl Tally {
    /// Counts one more for `key`, within `total` and `per_client`, or says which cap is reached.
    pub(crate) fn add(
        &mut self,
        key: ClientKey,
        total: Option<u32>,
        per_client: Option<u32>,
    ) -> Result<(), Capped> {
        if let Some(cap) = total
            && self.total >= cap
        {
            return Err(Capped::Total(cap));
        }
        let mine = self.by_key.get(&key).copied().unwrap_or(0);
        if let Some(cap) = per_client
            && mine >= cap
        {
            return Err(Capped::Client(cap));
        }
        self.total += 1;
        *self.by_key.entry(key).or_insert(0) += 1;
        Ok(())
    }

    /// Counts one fewer for `key`.
    pub(crate) fn remove(&mut self, key: ClientKey) {
        self.total -= 1;
        if let Some(n) = self.by_key.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.by_key.remove(&key);
            }
        }
    }

    /// How many are held in all.
    pub(crate) fn total(&self) -> u32 {
        self.total
    }
}

/// Why a request got no place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoPlace {
    /// Every place is taken.
    Full,
    /// The client holds `per_client` places already.
    ClientFull(u32),
}

/// A place in the queue, given back when dropped (the wait ended, however).
#[derive(Debug)]
pub(crate) struct Place {
    places: Arc<Places>,
    key: ClientKey,
}

impl Places {
    /// At most `size` waiting, `per_client[class]` of them one client's of that class.
    pub(crate) fn new(size: u32, per_client: Vec<Option<u32>>) -> Arc<Self> {
        Arc::new(Self {
            size,
            per_client,
            waiting: Mutex::new(Tally::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for `key`'s request, or why not.
    pub(crate) fn take(self: &Arc<Self>, key: ClientKey) -> Result<Place, NoPlace> {
        // A class out of range has the default's cap.
        let class = self.per_client.get(key.class()).or(self.per_client.first());
        self.lock()
            .add(key, Some(self.size), class.copied().flatten())
            .map_err(|capped| match capped {
                Capped::Total(_) => NoPlace::Full,
                Capped::Client(cap) => NoPlace::ClientFull(cap),
            })?;
        Ok(Place {
            places: Arc::clone(self),
            key,
        })
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.places.lock().remove(self.key);
    }
}

#[cfg(test)]
mod tests;
