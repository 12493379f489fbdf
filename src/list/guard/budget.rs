//! The held-page budget: all held list pages together stay under `max_held_bytes`, and each
//! client's under its share (`max_held_bytes_per_client`), so clients that hold pages and never
//! read them cannot make everyone else's list requests fail. A request over its client's share
//! waits (up to the same 2 s as for the total) for that client's own pages to be released.
//!
//! Reservations count in KiB. A reservation is taken when a page's head arrives (the route's
//! `max_bytes`), shrunk to the bytes actually held, and released when the last held byte has
//! been written to the client (it travels with the held bytes; see `guard`).
//!
//! Each page also reserves a small allowance for the copies of it that hyper holds until they
//! are written ([`super::held`]), so those count too.
//!
//! When the total is full and a request waits, the page in flight stalled the longest (at
//! least `HELD_UNREAD`) is cut to make room, one page per [`CUT_RETRY`] at most, so a few
//! clients that hold pages and never read them cannot pin the budget for `send_timeout`, and
//! a crowd of waiters cannot cut more pages than the room they wait for needs.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::held::{HeldPage, stalled_enough};
use crate::config::defaults::DEFAULT_HOLD_WAIT;
use crate::sync::{Millis, lock};

/// While a request waits for room, how often a page to cut is looked for, and the least time
/// between two cuts (50 ms).
const CUT_RETRY: Duration = Duration::from_millis(50);

/// No room for another held page (503 with `Retry-After`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HoldError {
    /// `max_held_bytes` stayed full for the hold wait.
    #[error("too many list pages are in flight right now; retry shortly")]
    Busy,
    /// This client's pages in flight already use its share.
    #[error(
        "this client's list pages in flight already hold its share of {share} bytes: read them before asking for more, or retry shortly"
    )]
    ClientShare {
        /// `max_held_bytes_per_client`.
        share: u64,
    },
}

/// The budget of one generation.
#[derive(Debug)]
pub struct HeldBudget {
    room: Arc<Semaphore>,
    clients: Mutex<HashMap<IpAddr, u32>>,
    /// Woken whenever a share is given back.
    freed: Notify,
    share_kib: u32,
    settings: (u64, u64),
    /// The pages in flight, by id.
    pages: Mutex<HashMap<u64, Weak<HeldPage>>>,
    next: AtomicU64,
    clock: Millis,
    /// When the last page was cut (milliseconds after the clock's epoch; 0: never).
    last_cut: AtomicU64,
    /// Pages cut to make room (`held_stream_cut`).
    cuts: Counter,
}

impl HeldBudget {
    /// A budget of `total` bytes, `per_client` of them at most for one client, whose cuts
    /// nobody counts.
    pub fn new(total: u64, per_client: u64) -> Arc<Self> {
        Self::counted(total, per_client, Counter::default())
    }

    /// As [`HeldBudget::new`], counting the pages it cuts in `cuts`.
    pub fn counted(total: u64, per_client: u64, cuts: Counter) -> Arc<Self> {
        // Rounded up, as each page's need is: a page of exactly the budget always fits.
        let kib = usize::try_from(total.div_ceil(1024)).unwrap_or(usize::MAX);
        Arc::new(Self {
            room: Arc::new(Semaphore::new(kib.min(Semaphore::MAX_PERMITS))),
            clients: Mutex::new(HashMap::new()),
            freed: Notify::new(),
            share_kib: u32::try_from(per_client.div_ceil(1024)).unwrap_or(u32::MAX),
            settings: (total, per_client),
            pages: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            clock: Millis::new(),
            last_cut: AtomicU64::new(0),
            cuts,
        })
    }

    /// Milliseconds since the budget was made, never 0 (0 means "not waiting").
    pub(super) fn now_ms(&self) -> u64 {
        self.clock.now()
    }

    /// Lists the page `make` builds from its id; the page unlists itself when dropped.
    pub(super) fn list(&self, make: impl FnOnce(u64) -> HeldPage) -> Arc<HeldPage> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let page = Arc::new(make(id));
        lock(&self.pages).insert(id, Arc::downgrade(&page));
        page
    }

    pub(super) fn unlist(&self, id: u64) {
        lock(&self.pages).remove(&id);
    }

    /// The most a page may reserve: `kib`, or less when the total or a share is smaller (a
    /// page's allowance for copies in flight is then trimmed, never the page).
    pub fn fit(&self, kib: u32) -> u32 {
        let total = u32::try_from(self.settings.0.div_ceil(1024)).unwrap_or(u32::MAX);
        kib.min(total).min(self.share_kib)
    }

    /// Cuts the page stalled the longest, if one has stalled long enough and no page was cut
    /// in the last [`CUT_RETRY`]; true if cut.
    fn cut_longest_stalled(&self) -> bool {
        let now = self.now_ms();
        let last = self.last_cut.load(Ordering::Acquire);
        if last != 0 && u128::from(now.saturating_sub(last)) < CUT_RETRY.as_millis() {
            return false;
        }
        // Upgraded under the lock, dropped after it: the last reference to a page unlists it.
        let pages: Vec<Arc<HeldPage>> = lock(&self.pages)
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        let chosen = pages
            .iter()
            .map(|page| (page.stalled_since(), page))
            .filter(|(since, page)| !page.is_cut() && stalled_enough(*since, now))
            .min_by_key(|(since, _)| *since);
        let Some((_, page)) = chosen else {
            return false;
        };
        // One waiter cuts at a time.
        if self
            .last_cut
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        page.cut();
        self.cuts.inc();
        true
    }

    /// Pages listed (tests).
    #[cfg(test)]
    pub(super) fn listed(&self) -> usize {
        lock(&self.pages).len()
    }

    /// KiB free in the total (tests).
    #[cfg(test)]
    pub(super) fn available_kib(&self) -> usize {
        self.room.available_permits()
    }

    /// The bytes held pages reserve now (in whole KiB, as they reserve).
    pub fn held_bytes(&self) -> u64 {
        let total = self
            .settings
            .0
            .div_ceil(1024)
            .min(Semaphore::MAX_PERMITS as u64);
        let free = u64::try_from(self.room.available_permits()).unwrap_or(u64::MAX);
        total.saturating_sub(free) * 1024
    }

    /// `(max_held_bytes, max_held_bytes_per_client)`, to tell whether a new config changes it.
    pub fn settings(&self) -> (u64, u64) {
        self.settings
    }

    /// Reserves `kib` for `client` (`None`: not over TCP, no share to count), waiting at most
    /// [`DEFAULT_HOLD_WAIT`] in all for room in the client's share, then in the total.
    pub async fn reserve(
        self: &Arc<Self>,
        client: Option<IpAddr>,
        kib: u32,
    ) -> Result<Reservation, HoldError> {
        let deadline = tokio::time::Instant::now() + DEFAULT_HOLD_WAIT;
        let share = match client {
            Some(ip) => Some(self.take_share(ip, kib, deadline).await?),
            None => None,
        };
        // One acquisition for the whole wait, so the request keeps its place in the queue.
        let acquire = Arc::clone(&self.room).acquire_many_owned(kib);
        tokio::pin!(acquire);
        let mut retry = tokio::time::interval(CUT_RETRY);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // On a timeout `share` is dropped here, which gives the client's share back.
        loop {
            tokio::select! {
                biased;
                permit = &mut acquire => {
                    return permit
                        .map(|permit| Reservation { permit, share })
                        .map_err(|_| HoldError::Busy);
                }
                () = tokio::time::sleep_until(deadline) => return Err(HoldError::Busy),
                // Full: the page stalled the longest makes room, if one has stalled long enough.
                _ = retry.tick() => {
                    self.cut_longest_stalled();
                }
            }
        }
    }

    /// Takes `kib` of `client`'s share, waiting until `deadline` for the client's own pages to
    /// be released.
    async fn take_share(
        self: &Arc<Self>,
        client: IpAddr,
        kib: u32,
        deadline: tokio::time::Instant,
    ) -> Result<Share, HoldError> {
        loop {
            // Registered before checking, so a release between the check and the wait is seen.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let mut clients = lock(&self.clients);
                let held = clients.get(&client).copied().unwrap_or(0);
                if held.saturating_add(kib) <= self.share_kib {
                    clients.insert(client, held + kib);
                    return Ok(Share {
                        budget: Arc::clone(self),
                        client,
                        kib,
                    });
                }
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Err(HoldError::ClientShare {
                    share: self.settings.1,
                });
            }
        }
    }

    fn release(&self, client: IpAddr, kib: u32) {
        {
            let mut clients = lock(&self.clients);
            if let Some(held) = clients.get_mut(&client) {
                *held = held.saturating_sub(kib);
                if *held == 0 {
                    clients.remove(&client);
                }
            }
        }
        self.freed.notify_waiters();
    }
}

/// A client's part of a reservation; gives it back when dropped.
#[derive(Debug)]
struct Share {
    budget: Arc<HeldBudget>,
    client: IpAddr,
    kib: u32,
}

impl Drop for Share {
    fn drop(&mut self) {
        self.budget.release(self.client, self.kib);
    }
}

/// Room for one held page, in the total and in its client's share; released when dropped.
#[derive(Debug)]
pub struct Reservation {
    permit: OwnedSemaphorePermit,
    share: Option<Share>,
}

impl Reservation {
    /// The KiB reserved.
    pub fn kib(&self) -> u32 {
        u32::try_from(self.permit.num_permits()).unwrap_or(u32::MAX)
    }

    /// Splits `kib` off into a reservation of its own (`None` if this one holds no more).
    pub fn split(&mut self, kib: u32) -> Option<Self> {
        if kib == 0 || kib >= self.kib() {
            return None;
        }
        let permit = self.permit.split(kib as usize)?;
        let share = self.share.as_mut().map(|share| {
            let moved = kib.min(share.kib);
            share.kib -= moved;
            Share {
                budget: Arc::clone(&share.budget),
                client: share.client,
                kib: moved,
            }
        });
        Some(Self { permit, share })
    }

    /// Keeps only `kib` of the reservation (at least 1); the rest returns to the budget.
    pub fn shrink(&mut self, kib: u32) {
        let kib = kib.max(1);
        let held = self.kib();
        if kib >= held {
            return;
        }
        if let Some(kept) = self.permit.split(kib as usize) {
            // `split` leaves the rest in `self.permit`; keep the split part, drop the rest.
            let rest = std::mem::replace(&mut self.permit, kept);
            drop(rest);
        }
        if let Some(share) = &mut self.share {
            share
                .budget
                .release(share.client, share.kib - kib.min(share.kib));
            share.kib = kib.min(share.kib);
        }
    }
}

#[cfg(test)]
mod tests;
