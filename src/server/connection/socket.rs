//! How long an HTTP/2 connection's socket could take bytes: the clock a stream's wait for its
//! client is measured on.
//!
//! A stream's frame waits inside h2 either because the client grants that stream no window, or
//! because the socket itself is full: a client on a slow link shares its bandwidth among every
//! busy stream, and h2 sends them a frame each in turn. Only the first is the stream's stall;
//! the second is the connection's, bounded by the socket's own send-stall timeout (a write
//! that waits `send_timeout` with no progress fails). So the stream clock stands still while
//! the socket is full, for at most [`FULL_SOCKET_GRACE`] times `send_timeout`: a client that
//! keeps its socket full by reading one stream slowly must not hold its other streams (their
//! pages, their upstream connections) for ever.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::config::defaults::FULL_SOCKET_GRACE;

use crate::sync::lock;

/// The time a connection's socket spent full (its writes waiting), in the registry's
/// milliseconds.
#[derive(Debug, Default)]
pub(super) struct SocketClock(Mutex<Full>);

#[derive(Debug, Default)]
struct Full {
    /// Milliseconds spent full before `since`.
    total: u64,
    /// When the socket became full (0: it is not).
    since: u64,
}

/// Since when a stream's frame waits for its client, on both clocks (0: not waiting).
#[derive(Debug, Default)]
pub(super) struct Waiting {
    wall: AtomicU64,
    open: AtomicU64,
}

impl Waiting {
    /// Waits from `now` (the registry's milliseconds), `open` on the socket's clock.
    pub(super) fn start(&self, now: u64, open: u64) {
        self.open.store(open, Ordering::Relaxed);
        // Published last: a reader that sees this `wall` sees its `open`.
        self.wall.store(now, Ordering::Release);
    }

    /// Not waiting (the client took the frame).
    pub(super) fn stop(&self) {
        self.wall.store(0, Ordering::Release);
    }

    /// Whether the wait is a stall at `now` (`open` on the socket's clock): `send_timeout`
    /// while the socket could take bytes, or [`FULL_SOCKET_GRACE`] times it in all.
    pub(super) fn stalled(&self, (now, open): (u64, u64), send_timeout: Duration) -> bool {
        let wall = self.wall.load(Ordering::Acquire);
        if wall == 0 {
            return false;
        }
        let since_open = self.open.load(Ordering::Relaxed);
        let limit = send_timeout.as_millis();
        u128::from(open.saturating_sub(since_open)) >= limit
            || u128::from(now.saturating_sub(wall)) >= limit * u128::from(FULL_SOCKET_GRACE)
    }
}

impl SocketClock {
    /// The socket became full (`full`), or took bytes again, at `now`.
    pub(super) fn set(&self, now: u64, full: bool) {
        let mut state = lock(&self.0);
        if full && state.since == 0 {
            state.since = now;
        } else if !full && state.since != 0 {
            state.total = state.total.saturating_add(now.saturating_sub(state.since));
            state.since = 0;
        }
    }

    /// `now` less the time the socket has been full: a clock that stands still while it is,
    /// never 0 (the stream clocks' "not waiting").
    pub(super) fn open(&self, now: u64) -> u64 {
        let state = lock(&self.0);
        let full = if state.since == 0 {
            state.total
        } else {
            state.total.saturating_add(now.saturating_sub(state.since))
        };
        now.saturating_sub(full).max(1)
    }
}
