//! Tokens refused per client address ([`Refusals`]): a token the cache does not hold costs up
//! to three signature checks, and one that does not verify spends no limit (the gate answers
//! before the limits run), so a client sending junk tokens would cost the machine that much
//! for each request, unthrottled. Each address (IPv6 by /64, as limits count it) may have
//! `refused_per_address` tokens refused; past it, its tokens the cache does not hold are not
//! checked until its budget refills: 429, or on an `anonymous: client` route served as
//! anonymous. A token that verifies spends nothing, so clients with good tokens never meet it,
//! and a remembered token passes whatever its address did.
//!
//! Written on governor's keyed GCRA (the product's rate-limit crate) with a map of the
//! addresses over their budget beside it, since governor cannot tell whether a key is spent
//! without spending it.

use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use governor::clock::{Clock as _, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use super::config::RefusalBudget;
use crate::sync::Interval;

/// Addresses kept at most; past it, new addresses share one budget ([`SHARED`]).
pub(crate) const MAX_REFUSING_ADDRESSES: usize = 100_000;

/// The key addresses share while [`MAX_REFUSING_ADDRESSES`] are kept (no client has it).
const SHARED: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);

/// How often addresses whose budget is whole again are forgotten (on a refusal, at most).
const TIDY: Duration = Duration::from_secs(1);

/// One identity's refused tokens by address.
#[derive(Debug)]
pub(crate) struct Refusals {
    /// Its answers tell how much budget is left, so the refusal that spends the last of it
    /// already makes the address wait.
    limiter: RateLimiter<
        IpAddr,
        DefaultKeyedStateStore<IpAddr>,
        DefaultClock,
        StateInformationMiddleware,
    >,
    /// Addresses over their budget, and until when.
    throttled: DashMap<IpAddr, Instant>,
    tidy: Interval,
}

impl Refusals {
    /// `rate` refusals per address (`refused_per_address`).
    pub(crate) fn new(rate: &RefusalBudget) -> Self {
        let period = rate.per / rate.requests.get();
        let quota = Quota::with_period(period.max(Duration::from_nanos(1)))
            .unwrap_or_else(|| Quota::per_second(rate.requests))
            .allow_burst(rate.burst);
        Self {
            limiter: RateLimiter::keyed(quota).with_middleware(),
            throttled: DashMap::new(),
            tidy: Interval::new(TIDY, false),
        }
    }

    /// How long `address` must wait before a token of its is checked again, if it is over its
    /// budget. While the addresses kept are at their cap, the shared budget's wait applies to
    /// every address too (it may be one of those sharing it).
    pub(crate) fn wait(&self, address: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let until = |key: IpAddr| self.throttled.get(&key).map(|u| *u).filter(|u| *u > now);
        let shared = || {
            (self.limiter.len() >= MAX_REFUSING_ADDRESSES)
                .then(|| until(SHARED))
                .flatten()
        };
        until(address).or_else(shared).map(|u| u - now)
    }

    /// A token from `address` was refused: spent from its budget, and once that is gone, its
    /// next tokens wait until it refills.
    pub(crate) fn refused(&self, address: IpAddr) {
        let key = if self.limiter.len() < MAX_REFUSING_ADDRESSES {
            address
        } else {
            SHARED
        };
        let wait = match self.limiter.check_key(&key) {
            // The last of the budget: the next unit comes one interval on (GCRA).
            Ok(state) if state.remaining_burst_capacity() == 0 => {
                Some(state.quota().replenish_interval())
            }
            Ok(_) => None,
            // Refused while another refusal of the address was being checked.
            Err(not_until) => Some(not_until.wait_time_from(DefaultClock::default().now())),
        };
        if let Some(wait) = wait {
            self.throttled.insert(key, Instant::now() + wait);
        }
        if self.tidy.pass() {
            // A walk of every address kept (at most the cap), once a second at most, and only
            // on the path of a refused token.
            let now = Instant::now();
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
            self.throttled.retain(|_, until| *until > now);
        }
    }

    /// Addresses kept now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.limiter.len()
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::time::Duration;

    use super::Refusals;
    use crate::identity::config::RefusalBudget;

    fn rate(requests: u32, burst: u32) -> RefusalBudget {
        RefusalBudget {
            requests: NonZeroU32::new(requests).expect("nonzero"),
            per: Duration::from_secs(60),
            burst: NonZeroU32::new(burst).expect("nonzero"),
        }
    }

    #[test]
    fn an_address_waits_once_its_refusals_are_spent_and_others_do_not() {
        let refusals = Refusals::new(&rate(1, 3));
        let (bad, good) = ([203, 0, 113, 7].into(), [198, 51, 100, 1].into());
        for _ in 0..3 {
            assert_eq!(refusals.wait(bad), None, "the burst is not spent yet");
            refusals.refused(bad);
        }
        let wait = refusals.wait(bad).expect("spent");
        assert!(
            wait > Duration::from_secs(50) && wait <= Duration::from_secs(60),
            "{wait:?}"
        );
        assert_eq!(refusals.wait(good), None);
        assert_eq!(refusals.len(), 1);
    }
}
