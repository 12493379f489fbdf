//! The admin listener's connection slots, shared out by peer address: one peer that opens
//! connections and sends nothing must not take every slot, or the kubelet's probes are
//! refused and the pod restarted.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Each peer's share: a quarter of `admin.max_connections`, at least one. Probes (liveness,
/// readiness, startup at once) and a scraper fit in the default's 4.
const PEER_SHARE_DIVISOR: usize = 4;

/// The slots, and how many each peer holds (at most `max_connections` entries: an entry
/// holds at least one slot).
#[derive(Debug)]
pub(super) struct Slots {
    total: Arc<Semaphore>,
    held: Mutex<HashMap<IpAddr, usize>>,
    per_peer: usize,
}

impl Slots {
    pub(super) fn new(max_connections: usize) -> Arc<Self> {
        Arc::new(Self {
            total: Arc::new(Semaphore::new(max_connections)),
            held: Mutex::default(),
            per_peer: (max_connections / PEER_SHARE_DIVISOR).max(1),
        })
    }

    /// A slot for `peer`, unless every slot or the peer's share is taken.
    pub(super) fn take(self: &Arc<Self>, peer: IpAddr) -> Option<Slot> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let count = held.get(&peer).copied().unwrap_or(0);
        if count >= self.per_peer {
            return None;
        }
        let permit = Arc::clone(&self.total).try_acquire_owned().ok()?;
        held.insert(peer, count + 1);
        Some(Slot {
            slots: Arc::clone(self),
            peer,
            _permit: permit,
        })
    }
}

/// One connection's slot, given back when dropped.
pub(super) struct Slot {
    slots: Arc<Slots>,
    peer: IpAddr,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = (self.slots.held.lock()).unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = held.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_takes_its_share_and_gives_it_back() {
        let slots = Slots::new(8);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let taken: Vec<Slot> = (0..2).map(|_| slots.take(a).expect("a's share")).collect();
        assert!(slots.take(a).is_none(), "a's share is 2 of 8");
        let others: Vec<Slot> = (0..2).map(|_| slots.take(b).expect("b's own")).collect();
        drop(taken);
        assert!(slots.take(a).is_some(), "given back");
        assert_eq!(
            slots.held.lock().unwrap().len(),
            1,
            "a's entry went with its slots"
        );
        drop(others);
        let small = Slots::new(1);
        let one = small.take(a).expect("one");
        assert!(small.take(b).is_none(), "all slots taken");
        drop(one);
    }
}
