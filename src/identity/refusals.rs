//! Tokens refused per client address ([`Refusals`]): a token the cache does not hold costs up
//! to three signature checks, and one that does not verify spends no limit (the gate answers
//! before the limits run), so a client sending junk tokens would cost the machine that much
//! for each request, unthrottled. Each address (IPv6 by /64, as limits count it) may have
//! `refused_per_address` tokens refused; past it, its tokens the cache does not hold are not
//! checked until its budget refills: 429, or on an `anonymous: client` route served as
//! anonymous. A token that verifies spends nothing and a remembered one passes whatever its
//! address did; but a good token the cache does not hold waits with its address, so clients
//! sharing one (a NAT) share its budget (`docs/limits.md` says how to size it).
//!
//! Written by hand (GCRA, as governor computes it, in one map): the check before a token is
//! verified must read an address's budget without spending it, and must tell an address kept
//! from a new one at the cap, which governor's keyed limiter offers neither of.

use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use dashmap::DashMap;

use super::config::RefusalBudget;
use crate::sync::Interval;

/// Addresses kept at most; past it, new addresses share one budget ([`SHARED`]).
pub(crate) const MAX_REFUSING_ADDRESSES: usize = 100_000;

/// The key new addresses share while the cap is reached (no client has it).
const SHARED: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);

/// How often addresses whose budget is whole again are forgotten (on a refusal, at most).
const TIDY: Duration = Duration::from_secs(1);

/// One identity's refused tokens by address.
#[derive(Debug)]
pub(crate) struct Refusals {
    /// Each address's theoretical arrival time (GCRA): its budget is whole from then on.
    due: DashMap<IpAddr, Instant>,
    /// One refusal's share of the window (`per / requests`).
    interval: Duration,
    /// How far ahead of now `due` may run while refusals still pass (`burst - 1` intervals).
    tolerance: Duration,
    cap: usize,
    tidy: Interval,
}

impl Refusals {
    /// `budget` refusals per address (`refused_per_address`).
    pub(crate) fn new(budget: &RefusalBudget) -> Self {
        Self::with_cap(budget, MAX_REFUSING_ADDRESSES)
    }

    fn with_cap(budget: &RefusalBudget, cap: usize) -> Self {
        let interval = budget.per / budget.requests.get();
        Self {
            due: DashMap::new(),
            interval,
            tolerance: interval * (budget.burst.get() - 1),
            cap,
            tidy: Interval::new(TIDY, false),
        }
    }

    /// Whose budget `address` spends: its own, or while the cap is reached and it is not
    /// kept, the one new addresses share.
    fn key(&self, address: IpAddr) -> IpAddr {
        if self.due.len() < self.cap || self.due.contains_key(&address) {
            address
        } else {
            SHARED
        }
    }

    /// How long `address` must wait before a token of its is checked again, if its budget is
    /// spent.
    pub(crate) fn wait(&self, address: IpAddr) -> Option<Duration> {
        let due = self.due.get(&self.key(address)).map(|due| *due)?;
        let open = due.checked_sub(self.tolerance)?;
        open.checked_duration_since(Instant::now())
            .filter(|wait| !wait.is_zero())
    }

    /// A token from `address` was refused: spent from its budget.
    pub(crate) fn refused(&self, address: IpAddr) {
        let now = Instant::now();
        let key = self.key(address);
        let mut due = self.due.entry(key).or_insert(now);
        *due = (*due).max(now) + self.interval;
        drop(due);
        if self.tidy.pass() {
            // A walk of every address kept (at most the cap), once a second at most, and only
            // on the path of a refused token.
            self.due.retain(|_, due| *due > now);
            self.due.shrink_to_fit();
        }
    }

    /// Addresses kept now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.due.len()
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::num::NonZeroU32;
    use std::time::Duration;

    use super::Refusals;
    use crate::identity::config::RefusalBudget;

    fn budget(requests: u32, burst: u32) -> RefusalBudget {
        RefusalBudget {
            requests: NonZeroU32::new(requests).expect("nonzero"),
            per: Duration::from_secs(60),
            burst: NonZeroU32::new(burst).expect("nonzero"),
        }
    }

    #[test]
    fn an_address_waits_once_its_refusals_are_spent_and_others_do_not() {
        let refusals = Refusals::new(&budget(1, 3));
        let (bad, good): (IpAddr, IpAddr) = ([203, 0, 113, 7].into(), [198, 51, 100, 1].into());
        for _ in 0..3 {
            assert_eq!(refusals.wait(bad), None, "the burst is not spent yet");
            refusals.refused(bad);
        }
        let wait = refusals.wait(bad).expect("spent");
        assert!(
            wait > Duration::from_secs(59) && wait <= Duration::from_secs(60),
            "{wait:?}"
        );
        assert_eq!(refusals.wait(good), None);
        assert_eq!(refusals.len(), 1);
    }

    #[test]
    fn at_the_cap_new_addresses_share_one_budget_and_kept_ones_keep_theirs() {
        let refusals = Refusals::with_cap(&budget(1, 2), 2);
        let ip = |n: u8| IpAddr::from([192, 0, 2, n]);
        refusals.refused(ip(1));
        refusals.refused(ip(2));
        assert_eq!(refusals.len(), 2);
        // Two newcomers spend the shared budget of two; a third waits with them.
        refusals.refused(ip(3));
        refusals.refused(ip(4));
        assert_eq!(refusals.len(), 3, "the two kept and the shared one");
        assert!(
            refusals.wait(ip(5)).is_some(),
            "a newcomer shares the spent budget"
        );
        // The kept addresses still have one refusal each before they wait.
        assert_eq!(refusals.wait(ip(1)), None);
        assert_eq!(refusals.wait(ip(2)), None);
        refusals.refused(ip(1));
        assert!(refusals.wait(ip(1)).is_some());
        assert_eq!(
            refusals.wait(ip(2)),
            None,
            "its own budget, not the shared one"
        );
    }
}
