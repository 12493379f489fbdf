//! The admin listener's connection slots, shared out by peer address: one peer that opens
//! connections and sends nothing must not take every slot, or the kubelet's probes are
//! refused and the pod restarted. When every slot is taken, a newcomer takes the slot of the
//! connection idle the longest (past [`EVICTABLE_AFTER`], no request under way), which is
//! closed: a few peers that each fill their share and send a request now and then cannot
//! keep a probe out, since probes come on new connections.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Each peer's share: a quarter of `admin.max_connections`, at least one. Probes (liveness,
/// readiness, startup at once) and a scraper fit in the default's 4.
const PEER_SHARE_DIVISOR: usize = 4;

/// How long a connection must have been idle before a newcomer may take its slot: a probe's
/// own connection, between its head and its answer, is never taken.
pub(super) const EVICTABLE_AFTER: Duration = Duration::from_secs(1);

/// The slots, how many each peer holds (at most `max_connections` entries: an entry holds at
/// least one slot), and the open connections a newcomer may take a slot from.
#[derive(Debug)]
pub(super) struct Slots {
    total: Arc<Semaphore>,
    held: Mutex<HashMap<IpAddr, usize>>,
    per_peer: usize,
    open: Mutex<Vec<Weak<Use>>>,
}

/// How one connection uses its slot: what an eviction reads and does.
#[derive(Debug)]
pub(super) struct Use {
    /// Requests under way.
    busy: AtomicUsize,
    /// When the last request ended (or the connection came).
    idle_since: Mutex<Instant>,
    /// The permit, until a newcomer takes it.
    permit: Mutex<Option<OwnedSemaphorePermit>>,
    /// The peer whose share it counts in; `None` for a trusted peer.
    peer: Option<IpAddr>,
    /// Told when the slot was taken: the connection closes.
    evicted: Notify,
}

impl Use {
    /// A request starts on the connection.
    pub(super) fn busy(&self) {
        self.busy.fetch_add(1, Ordering::AcqRel);
    }

    /// A request's answer is ready.
    pub(super) fn idle(&self) {
        *self
            .idle_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
        self.busy.fetch_sub(1, Ordering::AcqRel);
    }

    /// Resolves when a newcomer took this connection's slot.
    pub(super) async fn evicted(&self) {
        self.evicted.notified().await;
    }
}

impl Slots {
    pub(super) fn new(max_connections: usize) -> Arc<Self> {
        Arc::new(Self {
            total: Arc::new(Semaphore::new(max_connections)),
            held: Mutex::default(),
            per_peer: (max_connections / PEER_SHARE_DIVISOR).max(1),
            open: Mutex::default(),
        })
    }

    /// A slot for `peer`, unless the peer's share is taken, or every slot is and none is idle
    /// enough to take. Addresses count exactly, IPv6 too: the admin port's clients are the
    /// cluster's own, and in IPv6 clusters the kubelet, Prometheus and every pod may share one
    /// /64 (Cilium's default pool). A peer in `admin.allow` (`trusted`: loopback by default,
    /// where a service mesh's agent relays the kubelet's probes) has no share of its own, only
    /// the total.
    pub(super) fn take(self: &Arc<Self>, peer: IpAddr, trusted: bool) -> Option<Slot> {
        let peer = (!trusted).then_some(peer);
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(peer) = peer
            && held.get(&peer).copied().unwrap_or(0) >= self.per_peer
        {
            return None;
        }
        let permit = match Arc::clone(&self.total).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => self.take_idlest(&mut held)?,
        };
        if let Some(peer) = peer {
            *held.entry(peer).or_default() += 1;
        }
        let taken = Arc::new(Use {
            busy: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
            permit: Mutex::new(Some(permit)),
            peer,
            evicted: Notify::new(),
        });
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.retain(|u| u.strong_count() > 0);
        open.push(Arc::downgrade(&taken));
        Some(Slot {
            slots: Arc::clone(self),
            taken,
        })
    }

    /// The permit of the connection idle the longest, past [`EVICTABLE_AFTER`] and with no
    /// request under way, which is told to close; its peer's count goes down now.
    fn take_idlest(&self, held: &mut HashMap<IpAddr, usize>) -> Option<OwnedSemaphorePermit> {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let victim = open
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|u| u.busy.load(Ordering::Acquire) == 0)
            .map(|u| {
                let since = *u.idle_since.lock().unwrap_or_else(PoisonError::into_inner);
                (since, u)
            })
            .filter(|(since, _)| now.saturating_duration_since(*since) >= EVICTABLE_AFTER)
            .min_by_key(|(since, _)| *since)
            .map(|(_, u)| u)?;
        let permit = victim
            .permit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()?;
        if let Some(peer) = victim.peer {
            give_back(held, peer);
        }
        victim.evicted.notify_one();
        Some(permit)
    }
}

/// One fewer slot for `peer`.
fn give_back(held: &mut HashMap<IpAddr, usize>, peer: IpAddr) {
    if let Some(count) = held.get_mut(&peer) {
        *count -= 1;
        if *count == 0 {
            held.remove(&peer);
        }
    }
}

/// One connection's slot, given back when dropped (unless a newcomer took it).
pub(super) struct Slot {
    slots: Arc<Slots>,
    taken: Arc<Use>,
}

impl Slot {
    /// How the connection uses the slot, for its requests to report on.
    pub(super) fn usage(&self) -> Arc<Use> {
        Arc::clone(&self.taken)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = (self.slots.held.lock()).unwrap_or_else(PoisonError::into_inner);
        // Taken by a newcomer: its count went down then, and the permit is the newcomer's.
        let Some(permit) = self
            .taken
            .permit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        if let Some(peer) = self.taken.peer {
            give_back(&mut held, peer);
        }
        drop(permit);
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

    #[tokio::test(start_paused = true)]
    async fn a_newcomer_takes_the_slot_idle_the_longest() {
        let slots = Slots::new(4);
        let ip = |n: u8| IpAddr::from([10, 0, 0, n]);
        let a = slots.take(ip(1), false).expect("a");
        tokio::time::advance(Duration::from_millis(500)).await;
        let [b, c, d] = [2, 3, 4].map(|n| slots.take(ip(n), false).expect("a slot"));
        assert!(
            slots.take(ip(9), false).is_none(),
            "none idle for a second yet"
        );
        tokio::time::advance(Duration::from_millis(600)).await;
        // `b` has a request under way; `a` has been idle longest.
        b.usage().busy();
        let e = slots.take(ip(9), false).expect("a's slot");
        tokio::time::timeout(Duration::ZERO, a.usage().evicted())
            .await
            .expect("a is told to close");
        assert!(!slots.held.lock().expect("lock").contains_key(&ip(1)));
        // `a` closing gives back nothing: its permit is `e`'s.
        drop(a);
        assert!(
            slots.take(ip(10), false).is_none(),
            "c and d idle 0.6 s, b busy"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        let f = slots.take(ip(10), false).expect("c's or d's slot");
        assert_eq!(
            slots.held.lock().expect("lock").len(),
            4,
            "b, one of c/d, e, f"
        );
        drop((b, c, d, e, f));
        assert_eq!(slots.total.available_permits(), 4, "every permit back once");
        assert!(slots.held.lock().expect("lock").is_empty());
    }
}
