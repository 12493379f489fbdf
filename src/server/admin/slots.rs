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

    /// A slot for `peer`, unless every slot or the peer's share is taken. Addresses count
    /// exactly, IPv6 too: the admin port's clients are the cluster's own, and in IPv6 clusters
    /// the kubelet, Prometheus and every pod may share one /64 (Cilium's default pool). A peer
    /// in `admin.allow` (`trusted`: loopback by default, where a service mesh's agent relays
    /// the kubelet's probes) has no share of its own, only the total.
    pub(super) fn take(self: &Arc<Self>, peer: IpAddr, trusted: bool) -> Option<Slot> {
        if trusted {
            let permit = Arc::clone(&self.total).try_acquire_owned().ok()?;
            return Some(Slot {
                slots: Arc::clone(self),
                peer: None,
                _permit: permit,
            });
        }
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let count = held.get(&peer).copied().unwrap_or(0);
        if count >= self.per_peer {
            return None;
        }
        let permit = Arc::clone(&self.total).try_acquire_owned().ok()?;
        held.insert(peer, count + 1);
        Some(Slot {
            slots: Arc::clone(self),
            peer: Some(peer),
            _permit: permit,
        })
    }
}

/// One connection's slot, given back when dropped.
pub(super) struct Slot {
    slots: Arc<Slots>,
    /// The peer whose share it counts in; `None` for a trusted peer.
    peer: Option<IpAddr>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(peer) = self.peer else { return };
        let mut held = (self.slots.held.lock()).unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = held.get_mut(&peer) {
            *count -= 1;
            if *count == 0 {
                held.remove(&peer);
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
        let ip = |s: &str| -> IpAddr { s.parse().expect("address") };
        let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
        let taken: Vec<Slot> = (0..2).map(|_| slots.take(a, false).expect("a's")).collect();
        assert!(slots.take(a, false).is_none(), "a's share is 2 of 8");
        let others: Vec<Slot> = (0..2).map(|_| slots.take(b, false).expect("b's")).collect();
        drop(taken);
        assert!(slots.take(a, false).is_some(), "given back");
        let entries = slots.held.lock().expect("lock").len();
        assert_eq!(entries, 1, "a's entry went with its slots");
        drop(others);
        // IPv6 addresses count exactly (one /64 may hold the whole cluster); a trusted peer
        // counts only in the total.
        let first = slots.take(ip("2001:db8::1"), false).expect("v6");
        let second = slots.take(ip("2001:db8::2"), false).expect("another peer");
        let loopback = ip("127.0.0.1");
        let trusted: Vec<Slot> = (0..6)
            .map(|_| slots.take(loopback, true).expect("ok"))
            .collect();
        assert!(slots.take(loopback, true).is_none(), "all 8 taken");
        drop((first, second, trusted));
        let small = Slots::new(1);
        let one = small.take(a, false).expect("one");
        assert!(small.take(b, false).is_none(), "all slots taken");
        drop(one);
    }
}
