//! Which connection makes room when every `max_connections` slot is taken and a newcomer waits.
//!
//! A connection is evictable when it has no request in flight and either
//!
//! * its head is still incomplete [`SLOW_HEAD`] after its first byte (a trickled head: first in
//!   line, the longest trickling first, closed at once, since a graceful close lets a begun head
//!   keep arriving);
//! * it has said nothing for [`SILENT_NEWCOMER`] since it was accepted (closed at once: there
//!   is nothing to answer);
//! * it is idle between requests (GOAWAY on HTTP/2; on HTTP/1 hyper closes it at once).
//!
//! A connection whose first head arrives at a normal pace is never evictable, so a burst of
//! newcomers cannot evict one another. HTTP/2 connections are judged by their streams: bytes
//! with no stream open (PINGs, a HEADERS frame on its way) do not make them a slow head.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use super::{Close, Conn, Connections, lock};
use crate::config::defaults::{SILENT_NEWCOMER, SLOW_HEAD};

/// How urgently a connection should go, most urgent first; then the oldest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Why {
    SlowHead,
    Silent,
    Idle,
}

impl Connections {
    /// Asks the most evictable connection to close, and gives it (empty when none is
    /// evictable: it ends when the connection has).
    pub(in crate::server) fn evict(&self) -> Weak<Conn> {
        let now = self.now_ms();
        let open = lock(&self.open);
        let chosen = open
            .values()
            .filter_map(|conn| conn.evictable(now).map(|(why, since)| (why, since, conn)))
            .min_by_key(|(why, since, _)| (*why, *since));
        let Some((why, _, conn)) = chosen else {
            return Weak::new();
        };
        let closed = &self.closed;
        let (close, counter) = match why {
            Why::SlowHead => (Close::EvictedAtOnce, Some(&closed.evicted_slow_head)),
            Why::Silent => (Close::EvictedAtOnce, Some(&closed.evicted_silent)),
            Why::Idle => (Close::Evicted, None),
        };
        conn.ask_counting(close, counter);
        Arc::downgrade(conn)
    }
}

impl Conn {
    /// Why this connection may be evicted at `now` (ms after the epoch), and since when.
    fn evictable(&self, now: u64) -> Option<(Why, u64)> {
        if self.in_flight.load(Ordering::Acquire) > 0 || self.reason().is_some() {
            return None;
        }
        let past = |since: u64, limit: std::time::Duration| {
            u128::from(now.saturating_sub(since)) >= limit.as_millis()
        };
        let h2 = self.h2.load(Ordering::Acquire);
        let head = self.head_since.load(Ordering::Relaxed);
        if head != 0 && !h2 {
            return past(head, SLOW_HEAD).then_some((Why::SlowHead, head));
        }
        let idle = self.idle_since.load(Ordering::Relaxed);
        if self.served.load(Ordering::Relaxed) {
            return Some((Why::Idle, idle));
        }
        if h2 {
            // An HTTP/2 connection whose first stream has not opened yet (an idle gRPC
            // channel): idle once past its first second, closed with GOAWAY.
            return past(idle, SILENT_NEWCOMER).then_some((Why::Idle, idle));
        }
        past(idle, SILENT_NEWCOMER).then_some((Why::Silent, idle))
    }
}

#[cfg(test)]
mod tests;
