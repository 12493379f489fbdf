//! What pagegate knows of each open client connection beyond its socket, for the protections
//! that need it:
//!
//! * **Eviction at `max_connections`** (see [`eviction`]): which connection makes room for a
//!   newcomer, never one whose first head is arriving at a normal pace.
//! * **HTTP/2 idle timeout.** PINGs keep an HTTP/2 connection alive for as long as its client
//!   answers them; one with no stream for `http2_idle_timeout` gets GOAWAY.
//! * **HTTP/2 rapid reset.** A stream the client cancels before its answer ended (the request
//!   may already be on the backend) is a reset; a stream whose last frame pagegate handed
//!   hyper (passed, refused, empty) never is. More than `http2_max_resets` resets within any
//!   [`HTTP2_RESET_WINDOW`] (a sliding window, so no pace gets more): GOAWAY, and the
//!   connection is closed.
//! * **HTTP/2 send stall.** A client that stops granting one stream flow-control window stalls
//!   that stream inside h2 while the socket stays busy with others (or with PINGs), so the
//!   socket's send-stall timeout never fires and the stream's held page stays pinned. Each
//!   stream's body notes when it handed hyper a frame; hyper (1.12) holds that frame until the
//!   stream has send capacity and asks for the next one only then, so a frame waiting
//!   `send_timeout` means the client took nothing: the connection is closed, as an HTTP/1
//!   client that reads nothing is. Frames are cut to [`H2_FRAME`] bytes, so a slow reader that
//!   makes progress is asked for more in time (a stream must take 16 KiB per `send_timeout`).
//!   Time the socket itself is full counts only against four `send_timeout`s ([`socket`]):
//!   streams sharing a slow link wait their turn, and the socket's own send-stall timeout
//!   watches that link.
//!   The body's end is asked for as soon as its last frame is sent into h2's buffer, so the
//!   last frame's delivery is not watched here: a connection asked to close gracefully gets
//!   `send_timeout` to finish, then is closed.
//!
//! Streams that end because the connection is closing (an I/O error, a close pagegate asked
//! for) are not counted as client resets.
//!
//! Hand-written: these are accounting hooks around hyper's connection, which offers none.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::defaults::HTTP2_RESET_WINDOW;
use crate::sync::{Millis, lock};

mod eviction;
mod socket;
mod stream;

pub(super) use stream::{Answer, Stream};

/// Largest data frame an HTTP/2 stream's body hands hyper at once (16 KiB, HTTP/2's default
/// frame size): hyper asks for the next frame when the client has taken this one.
pub(super) const H2_FRAME: usize = 16 * 1024;

/// The settings these protections read.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub(super) http2_idle_timeout: Duration,
    pub(super) send_timeout: Duration,
    pub(super) http2_max_resets: u32,
}

/// Counters of the connections closed here (`pagegate_protections_total`).
#[derive(Debug, Clone, Default)]
pub(super) struct Closed {
    pub(super) evicted_idle: Counter,
    pub(super) evicted_silent: Counter,
    pub(super) evicted_slow_head: Counter,
    pub(super) http2_idle: Counter,
    pub(super) http2_resets: Counter,
    pub(super) send_stall: Counter,
}

/// Why a connection is asked to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Close {
    /// Idle at `max_connections`, closed to make room: GOAWAY or a plain close.
    Evicted = 1,
    /// At `max_connections`, silent since accept or with a head still incomplete: closed at
    /// once (a graceful close would let a begun head keep arriving).
    EvictedAtOnce = 5,
    /// HTTP/2 with no stream for `http2_idle_timeout`: GOAWAY.
    Idle = 2,
    /// HTTP/2 streams cancelled beyond `http2_max_resets`: GOAWAY, then closed.
    Resets = 3,
    /// An HTTP/2 stream's client took nothing for `send_timeout`: closed at once.
    Stalled = 4,
    /// An HTTP/1 connection whose held page was cut to make room: closed at once.
    HeldCut = 6,
}

impl Close {
    fn from_u8(value: u8) -> Option<Self> {
        match value {
            1 => Some(Self::Evicted),
            2 => Some(Self::Idle),
            3 => Some(Self::Resets),
            4 => Some(Self::Stalled),
            5 => Some(Self::EvictedAtOnce),
            6 => Some(Self::HeldCut),
            _ => None,
        }
    }
}

/// The open connections.
#[derive(Debug)]
pub(super) struct Connections {
    settings: Settings,
    closed: Closed,
    clock: Millis,
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
}

/// One open connection, shared by its task, its requests and the registry.
#[derive(Debug)]
pub(super) struct Conn {
    id: u64,
    connections: Arc<Connections>,
    in_flight: AtomicU32,
    /// Milliseconds after the registry's epoch when `in_flight` last became zero (at first,
    /// when the connection was accepted).
    idle_since: AtomicU64,
    /// Milliseconds after the epoch when bytes arrived with no request in flight (a head
    /// begun; 0: none since the last request began).
    head_since: AtomicU64,
    /// A request has begun on this connection.
    served: AtomicBool,
    h2: AtomicBool,
    h2_started: Notify,
    reason: AtomicU8,
    close: Notify,
    /// The connection is ending: its streams' drops are not client resets.
    ending: AtomicBool,
    /// When the resets of the last [`HTTP2_RESET_WINDOW`] happened, oldest first.
    resets: Mutex<VecDeque<Instant>>,
    next_stream: AtomicU64,
    /// Per HTTP/2 stream: since when its body's last frame waits for the client.
    streams: Mutex<HashMap<u64, Arc<socket::Waiting>>>,
    /// The time the socket was full, which a stream's wait does not count.
    socket: socket::SocketClock,
}

/// A connection's entry in the registry, removed when its task ends.
#[derive(Debug)]
pub(super) struct Registered(pub(super) Arc<Conn>);

impl Drop for Registered {
    fn drop(&mut self) {
        lock(&self.0.connections.open).remove(&self.0.id);
    }
}

impl Connections {
    pub(super) fn new(settings: Settings, closed: Closed) -> Arc<Self> {
        Arc::new(Self {
            settings,
            closed,
            clock: Millis::new(),
            next: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        })
    }

    fn now_ms(&self) -> u64 {
        self.clock.now()
    }

    /// The open connections, and the requests in flight on them.
    pub(crate) fn counts(&self) -> (usize, u64) {
        let open = lock(&self.open);
        let streams = open
            .values()
            .map(|conn| u64::from(conn.in_flight.load(Ordering::Relaxed)))
            .sum();
        (open.len(), streams)
    }

    /// Registers a new connection.
    pub(super) fn open(self: &Arc<Self>) -> Registered {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            id,
            connections: Arc::clone(self),
            in_flight: AtomicU32::new(0),
            idle_since: AtomicU64::new(self.now_ms()),
            head_since: AtomicU64::new(0),
            served: AtomicBool::new(false),
            h2: AtomicBool::new(false),
            h2_started: Notify::new(),
            reason: AtomicU8::new(0),
            close: Notify::new(),
            ending: AtomicBool::new(false),
            resets: Mutex::new(VecDeque::new()),
            next_stream: AtomicU64::new(0),
            streams: Mutex::new(HashMap::new()),
            socket: socket::SocketClock::default(),
        });
        lock(&self.open).insert(id, Arc::clone(&conn));
        Registered(conn)
    }
}

impl Conn {
    fn reason(&self) -> Option<Close> {
        Close::from_u8(self.reason.load(Ordering::Acquire))
    }

    /// Asks the connection's task to close it, counting why (the first reason wins).
    fn ask(&self, close: Close) {
        self.ask_counting(close, None);
    }

    /// As [`Conn::ask`], counting `counter` instead of the reason's own.
    fn ask_counting(&self, close: Close, counter: Option<&Counter>) {
        if self
            .reason
            .compare_exchange(0, close as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        let closed = &self.connections.closed;
        let counter = counter.or(match close {
            Close::Evicted | Close::EvictedAtOnce => Some(&closed.evicted_idle),
            Close::Idle => Some(&closed.http2_idle),
            Close::Resets => Some(&closed.http2_resets),
            Close::Stalled => Some(&closed.send_stall),
            // Counted by the held-page budget that cut it (`held_stream_cut`).
            Close::HeldCut => None,
        });
        if let Some(counter) = counter {
            counter.inc();
        }
        self.close.notify_one();
    }

    /// A request is in flight.
    pub(super) fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// A held page of this (HTTP/1) connection was cut: closed at once.
    pub(super) fn cut_held(&self) {
        self.ask(Close::HeldCut);
    }

    /// The connection speaks HTTP/2 (its preface arrived, or a request came over it).
    pub(super) fn http2(&self) {
        if !self.h2.swap(true, Ordering::AcqRel) {
            self.h2_started.notify_one();
        }
    }

    /// Resolves with the reason when this connection must close. HTTP/1 connections only wait
    /// for an eviction; HTTP/2 ones also check their idle time and streams a few times per
    /// timeout.
    pub(super) async fn closing(self: Arc<Self>) -> Close {
        tokio::select! {
            () = self.close.notified() => return self.reason().unwrap_or(Close::Evicted),
            () = self.h2_started.notified() => {}
        }
        let settings = &self.connections.settings;
        let period = (settings.http2_idle_timeout.min(settings.send_timeout) / 4)
            .clamp(Duration::from_millis(10), Duration::from_secs(1));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.close.notified() => return self.reason().unwrap_or(Close::Evicted),
                _ = tick.tick() => {
                    if let Some(close) = self.check() {
                        self.ask(close);
                        return close;
                    }
                }
            }
        }
    }

    /// An HTTP/2 connection's periodic check: idle too long, or a stream stalled.
    fn check(&self) -> Option<Close> {
        let settings = &self.connections.settings;
        let now = self.connections.now_ms();
        let older = |since: u64, limit: Duration| {
            since != 0 && u128::from(now.saturating_sub(since)) >= limit.as_millis()
        };
        if self.in_flight.load(Ordering::Acquire) == 0 {
            return older(
                self.idle_since.load(Ordering::Relaxed),
                settings.http2_idle_timeout,
            )
            .then_some(Close::Idle);
        }
        let open = self.socket.open(now);
        lock(&self.streams)
            .values()
            .any(|waiting| waiting.stalled((now, open), settings.send_timeout))
            .then_some(Close::Stalled)
    }

    /// The socket's writes wait (`full`: the client reads slower than pagegate writes), or
    /// it took bytes again.
    pub(super) fn socket_full(&self, full: bool) {
        self.socket.set(self.connections.now_ms(), full);
    }

    /// A stream's frame waits for the client from now on.
    fn wait(&self, waiting: &socket::Waiting) {
        let now = self.connections.now_ms();
        waiting.start(now, self.socket.open(now));
    }

    /// Bytes arrived from the client: with no request in flight, a head has begun.
    pub(super) fn bytes_arrived(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_since.load(Ordering::Relaxed) == 0
        {
            let now = self.connections.now_ms();
            self.head_since.store(now, Ordering::Relaxed);
        }
    }

    /// A request starts on this connection; the guard ends it.
    pub(super) fn stream(self: &Arc<Self>, h2: bool) -> Stream {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(0, Ordering::Relaxed);
        self.served.store(true, Ordering::Relaxed);
        let clock = h2.then(|| {
            self.http2();
            let key = self.next_stream.fetch_add(1, Ordering::Relaxed);
            let clock = Arc::new(socket::Waiting::default());
            lock(&self.streams).insert(key, Arc::clone(&clock));
            (key, clock)
        });
        Stream {
            conn: Arc::clone(self),
            clock,
            answered: false,
            polled: false,
            ended: false,
        }
    }

    /// The connection is ending (closed, failed, or asked to close): later stream drops are not
    /// a client's resets.
    pub(super) fn ending(&self) {
        self.ending.store(true, Ordering::Release);
    }

    /// A stream the client cancelled: one reset in the window.
    fn cancelled(&self) {
        if self.ending.load(Ordering::Acquire) {
            return;
        }
        let max = usize::try_from(self.connections.settings.http2_max_resets).unwrap_or(usize::MAX);
        let now = Instant::now();
        let mut resets = lock(&self.resets);
        while resets
            .front()
            .is_some_and(|at| now.duration_since(*at) >= HTTP2_RESET_WINDOW)
        {
            resets.pop_front();
        }
        resets.push_back(now);
        let over = resets.len() > max;
        drop(resets);
        if over {
            self.ask(Close::Resets);
        }
    }
}

#[cfg(test)]
mod tests;
