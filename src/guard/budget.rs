//! The held-page budget: all held list pages together stay under `max_held_bytes`, and each
//! client's under its share (`max_held_bytes_per_client`), so clients that hold pages and never
//! read them cannot make everyone else's list requests fail. A request over its client's share
//! waits (up to the same 2 s as for the total) for that client's own pages to be released.
//!
//! Reservations count in KiB. A reservation is taken when a page's head arrives (the route's
//! `max_bytes`), shrunk to the bytes actually held, and released when the last held byte has
//! been written to the client (it travels with the held bytes; see `guard`).
//!
//! When the total is full and a request waits, the page in flight that has gone unread the
//! longest (at least `HELD_UNREAD`) is cut to make room ([`super::held`]), so a few clients
//! that hold pages and never read them cannot pin the budget for `send_timeout`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::held::{HeldPage, unread_enough};
use crate::config::defaults::DEFAULT_HOLD_WAIT;

/// While a request waits for room, how often a page to cut is looked for (50 ms).
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
    epoch: Instant,
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
            epoch: Instant::now(),
            cuts,
        })
    }

    /// Milliseconds since the budget was made, never 0 (0 means "not waiting").
    pub(super) fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX) + 1
    }

    /// Lists a page in flight; its id unlists it.
    pub(super) fn list(&self, page: &Arc<HeldPage>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        lock(&self.pages).insert(id, Arc::downgrade(page));
        id
    }

    pub(super) fn unlist(&self, id: u64) {
        lock(&self.pages).remove(&id);
    }

    /// Cuts the page unread the longest, if one has gone unread long enough; true if cut.
    fn cut_longest_unread(&self) -> bool {
        let now = self.now_ms();
        let chosen = lock(&self.pages)
            .values()
            .filter_map(Weak::upgrade)
            .filter(|page| !page.is_cut() && unread_enough(page.unread_since(), now))
            .min_by_key(|page| page.unread_since());
        let Some(page) = chosen else {
            return false;
        };
        page.cut();
        self.cuts.inc();
        true
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
        // On a timeout `share` is dropped here, which gives the client's share back.
        loop {
            if let Ok(permit) = Arc::clone(&self.room).try_acquire_many_owned(kib) {
                return Ok(Reservation { permit, share });
            }
            // Full: the page unread the longest makes room, if one has gone unread long enough.
            self.cut_longest_unread();
            tokio::select! {
                permit = Arc::clone(&self.room).acquire_many_owned(kib) => {
                    return permit
                        .map(|permit| Reservation { permit, share })
                        .map_err(|_| HoldError::Busy);
                }
                () = tokio::time::sleep(CUT_RETRY) => {}
                () = tokio::time::sleep_until(deadline) => return Err(HoldError::Busy),
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

/// Locks `mutex`, poisoned or not (nothing here leaves a half-updated value behind).
pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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
    /// Keeps only `kib` of the reservation (at least 1); the rest returns to the budget.
    pub fn shrink(&mut self, kib: u32) {
        let kib = kib.max(1);
        let held = u32::try_from(self.permit.num_permits()).unwrap_or(u32::MAX);
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
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([203, 0, 113, last]))
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_cannot_take_more_than_its_share_and_gets_it_back() {
        let budget = HeldBudget::new(100 * 1024, 40 * 1024);
        let first = budget.reserve(ip(1), 30).await.expect("within the share");
        assert_eq!(
            budget.reserve(ip(1), 20).await.err(),
            Some(HoldError::ClientShare { share: 40 * 1024 })
        );
        let other = budget.reserve(ip(2), 40).await.expect("another client");
        // A request over the share waits for the client's own pages to be released.
        let waiting = tokio::spawn({
            let budget = Arc::clone(&budget);
            async move { budget.reserve(ip(1), 40).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        drop(first);
        let again = waiting.await.expect("task").expect("given back on drop");
        assert_eq!(budget.room.available_permits(), 100 - 80);
        drop((other, again));
        assert_eq!(budget.room.available_permits(), 100);
        assert!(
            budget.clients.lock().expect("lock").is_empty(),
            "no entry left behind"
        );
    }

    #[tokio::test]
    async fn shrinking_returns_the_unused_part_to_both() {
        let budget = HeldBudget::new(100 * 1024, 40 * 1024);
        let mut page = budget.reserve(ip(1), 40).await.expect("reserved");
        page.shrink(10);
        assert_eq!(budget.room.available_permits(), 90);
        let more = budget
            .reserve(ip(1), 30)
            .await
            .expect("the share has room again");
        drop((page, more));
        assert_eq!(budget.room.available_permits(), 100);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_total_is_busy_after_the_hold_wait_and_the_share_is_given_back() {
        let budget = HeldBudget::new(50 * 1024, 50 * 1024);
        let _all = budget.reserve(ip(1), 50).await.expect("the whole budget");
        assert_eq!(budget.reserve(ip(2), 10).await.err(), Some(HoldError::Busy));
        assert!(
            !budget
                .clients
                .lock()
                .expect("lock")
                .contains_key(&IpAddr::from([203, 0, 113, 2]))
        );
    }
}
