//! Deadlines on a client connection's socket that hyper cannot set itself:
//!
//! * **First bytes.** hyper-util's `auto` builder reads a connection's first bytes to tell
//!   HTTP/1 from HTTP/2 before hyper's own header-read timer exists, and waits for them
//!   forever: a client that connects and sends nothing would hold a connection (and a
//!   `max_connections` slot) for as long as it likes.
//! * **Send stall.** A client that stops reading makes writes wait forever: its response, a
//!   held list page's reservation and its upstream connection stay pinned. A write that makes
//!   no progress for `send_timeout` fails, which closes the connection and releases them all.
//! * **HTTP/2 control-frame floods** (see [`frames`]).
//! * **Arrivals** for eviction: plaintext bytes, and under listener TLS the raw bytes a
//!   handshake reads ([`Arrivals`]), tell the connection its head has begun.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use frames::Frames;

mod arrivals;
mod frames;

pub(super) use arrivals::Arrivals;

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Counters of the connections this wrapper closes (`pagegate_protections_total`).
#[derive(Debug, Clone, Default)]
pub(super) struct Closed {
    /// No request head began within `header_read_timeout`.
    pub(super) first_bytes: Counter,
    /// A write waited `send_timeout`.
    pub(super) send_stall: Counter,
    /// An HTTP/2 client sent control frames past the bound.
    pub(super) http2_control_flood: Counter,
    /// A TLS handshake failed (a plaintext client, a certificate refused; a stalled one is
    /// `first_bytes`).
    pub(super) tls_handshake: Counter,
    /// hyper answered a head it could not parse (400) itself.
    pub(super) head_malformed: Counter,
    /// hyper answered a head past `max_head_bytes`, or a URI too long, (431, 414) itself.
    pub(super) head_too_large: Counter,
    /// The listener's lines about what its clients did wrong: a few a second, not one per
    /// connection a client can open.
    pub(super) lines: std::sync::Arc<crate::telemetry::Throttle>,
}

impl Closed {
    /// Notes how a connection's serving ended: hyper's own answers to a bad head (which reach
    /// no layer, so neither the access log nor a route's metrics) are counted, and logged at
    /// info with the client's address (`suppressed`: lines the throttle left out before it);
    /// any other error (a reset, a closed socket) at debug.
    pub(super) fn ended(&self, result: Result<(), crate::BoxError>, peer: std::net::IpAddr) {
        let Err(error) = result else { return };
        let hyper =
            std::iter::successors(Some(&*error as &(dyn std::error::Error + 'static)), |e| {
                e.source()
            })
            .find_map(|e| e.downcast_ref::<hyper::Error>());
        let counter = match hyper {
            Some(e) if e.is_parse_too_large() => &self.head_too_large,
            Some(e) if e.is_parse() => &self.head_malformed,
            // A timeout is hyper's header_read_timeout, which also closes idle keep-alive
            // connections: no refusal.
            _ => {
                tracing::debug!(%error, %peer, "connection ended with an error");
                return;
            }
        };
        counter.inc();
        if let Some(suppressed) = self.lines.admit() {
            tracing::info!(%error, %peer, suppressed, "request head refused");
        }
    }
}

/// A client socket with a first-bytes deadline and a send-stall timeout.
#[derive(Debug)]
pub(super) struct ClientIo<T> {
    inner: T,
    closed: Closed,
    /// Until the protocol sniff is settled. Boxed so the wrapper stays `Unpin`, as hyper wants
    /// its IO.
    first_bytes: Option<Pin<Box<Sleep>>>,
    /// Bytes read so far that match the HTTP/2 preface (the sniff waits while they do).
    preface_matched: usize,
    send_timeout: Duration,
    /// Armed while a write waits; one allocation, made the first time a write waits.
    stalled: Option<Pin<Box<Sleep>>>,
    /// Whether `stalled` is counting (a write is waiting).
    waiting: bool,
    /// Told when bytes arrive (eviction) and when the HTTP/2 preface has (its idle and stream
    /// checks start).
    conn: Option<std::sync::Arc<super::connection::Conn>>,
    /// HTTP/2 only: the control-frame accounting, from the end of the preface on.
    frames: Option<Box<Frames>>,
    /// The raw bytes [`Arrivals`] counted (under listener TLS, before any plaintext), and the
    /// count last seen.
    raw: Option<(std::sync::Arc<std::sync::atomic::AtomicU64>, u64)>,
}

impl<T> ClientIo<T> {
    /// Wraps `inner`: its first byte must arrive within `first_bytes` from now, and no write
    /// may wait longer than `send_timeout`.
    pub(super) fn new(
        inner: T,
        first_bytes: Duration,
        send_timeout: Duration,
        closed: Closed,
    ) -> Self {
        Self {
            inner,
            closed,
            first_bytes: Some(Box::pin(tokio::time::sleep(first_bytes))),
            preface_matched: 0,
            send_timeout,
            stalled: None,
            waiting: false,
            conn: None,
            frames: None,
            raw: None,
        }
    }

    /// Reads the raw bytes `count` ([`Arrivals`] under TLS) as arrivals too: a handshake
    /// under way is a head begun, not a silent connection.
    pub(super) fn noting(mut self, count: std::sync::Arc<std::sync::atomic::AtomicU64>) -> Self {
        self.raw = Some((count, 0));
        self
    }

    /// Tells `conn` when bytes arrive (a head begins) and when the HTTP/2 preface has.
    pub(super) fn watched_by(mut self, conn: std::sync::Arc<super::connection::Conn>) -> Self {
        self.conn = Some(conn);
        self
    }

    /// Follows hyper-util's protocol sniff over the first bytes read: it reads until 24 bytes
    /// of the HTTP/2 preface have arrived or a byte differs from it, and only then does hyper's
    /// own header timer exist. When this read completes the preface, the connection is HTTP/2:
    /// its frame accounting starts, at the returned offset into `read`.
    fn sniff(&mut self, read: &[u8]) -> Option<usize> {
        let at = self.preface_matched;
        let rest = &H2_PREFACE[at.min(H2_PREFACE.len())..];
        let same = read.iter().zip(rest).take_while(|(a, b)| a == b).count();
        if same < read.len().min(rest.len()) {
            self.first_bytes = None;
            return None;
        }
        if at + same < H2_PREFACE.len() {
            self.preface_matched = at + same;
            return None;
        }
        self.first_bytes = None;
        if let Some(conn) = &self.conn {
            conn.http2();
        }
        self.frames = Some(Box::new(Frames::new()));
        Some(same)
    }

    /// Ends a flooding HTTP/2 connection: GOAWAY `ENHANCE_YOUR_CALM` if it can go out whole
    /// now (one try, no wait), and an error for hyper, which closes the connection.
    fn calm(&mut self, cx: &mut Context<'_>) -> io::Error
    where
        T: AsyncWrite + Unpin,
    {
        self.closed.http2_control_flood.inc();
        if let Some(goaway) = self.frames.as_ref().and_then(|frames| frames.goaway()) {
            let _ = Pin::new(&mut self.inner).poll_write(cx, &goaway);
            let _ = Pin::new(&mut self.inner).poll_flush(cx);
        }
        flooded()
    }

    /// Tells an HTTP/2 connection's streams that the socket is full, or took bytes again: a
    /// stream's frame waiting its turn behind a full socket is not the stream's stall.
    fn full(&self, full: bool) {
        if let (Some(conn), Some(_)) = (&self.conn, &self.frames) {
            conn.socket_full(full);
        }
    }

    /// Runs `write`; a `Pending` that lasts `send_timeout` becomes a `TimedOut` error.
    fn guard_write<R>(
        &mut self,
        cx: &mut Context<'_>,
        write: impl FnOnce(Pin<&mut T>, &mut Context<'_>) -> Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>>
    where
        T: Unpin,
    {
        let polled = write(Pin::new(&mut self.inner), cx);
        if polled.is_ready() {
            if self.waiting {
                self.waiting = false;
                self.full(false);
            }
            return polled;
        }
        if !self.waiting {
            self.full(true);
        }
        let deadline = Instant::now() + self.send_timeout;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !self.waiting {
            sleep.as_mut().reset(deadline);
            self.waiting = true;
        }
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.closed.send_stall.inc();
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client read nothing for send_timeout",
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

fn flooded() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "HTTP/2 control frames past the bound",
    )
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for ClientIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let this = &mut *self;
        if let Some(conn) = &this.conn {
            let raw = this.raw.as_mut().is_some_and(|(count, seen)| {
                let now = count.load(std::sync::atomic::Ordering::Relaxed);
                std::mem::replace(seen, now) != now
            });
            if raw || buf.filled().len() > before {
                conn.bytes_arrived();
            }
        }
        if let Some(frames) = self.frames.as_mut() {
            if frames.over() {
                // Later reads fail too: the connection is over.
                return Poll::Ready(Err(flooded()));
            }
            if polled.is_ready() && frames.read(&buf.filled()[before..]) {
                return Poll::Ready(Err(self.calm(cx)));
            }
            return polled;
        }
        let Some(deadline) = self.first_bytes.as_mut() else {
            return polled;
        };
        match polled {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                let read = &buf.filled()[before..];
                let flood = self.sniff(read).is_some_and(|at| {
                    let frames = self.frames.as_mut().expect("the sniff made them");
                    frames.read(&read[at..])
                });
                if flood {
                    return Poll::Ready(Err(self.calm(cx)));
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if deadline.as_mut().poll(cx).is_ready() => {
                self.first_bytes = None;
                self.closed.first_bytes.inc();
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no request within header_read_timeout",
                )))
            }
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ClientIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = self.guard_write(cx, |io, cx| io.poll_write(cx, buf));
        if let (Poll::Ready(Ok(n)), Some(frames)) = (&polled, self.frames.as_mut()) {
            frames.wrote(&buf[..*n]);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = self.guard_write(cx, |io, cx| io.poll_write_vectored(cx, bufs));
        if let (Poll::Ready(Ok(n)), Some(frames)) = (&polled, self.frames.as_mut()) {
            let mut left = *n;
            for buf in bufs {
                let take = left.min(buf.len());
                frames.wrote(&buf[..take]);
                left -= take;
            }
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.guard_write(cx, AsyncWrite::poll_flush)
    }

    /// Under `send_timeout` too: over TLS it writes a close_notify record, which a client that
    /// reads nothing would otherwise hold forever, and with it the connection's slot.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.guard_write(cx, AsyncWrite::poll_shutdown)
    }
}

#[cfg(test)]
mod tests;
