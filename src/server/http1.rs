//! pagegate's own HTTP/1.1 server path: a connection whose requests are plain `GET`s and
//! `HEAD`s (the hop's common case) is served here, in its own task, with no channel,
//! dispatcher or second parse between the socket and the route stack. The first request
//! that needs more (see [`request`]) hands the connection to hyper for the rest of its life,
//! from the first byte of that request, so hyper's rules toward clients (request smuggling,
//! `100 Continue`, upgrades, HTTP/2, its 400, 414 and 431 answers) apply to everything this
//! path does not read itself.
//!
//! * **Reads.** A head still arriving is read on here, up to `max_head_bytes` and within
//!   `header_read_timeout` from its first byte (or, after a request, from the end of the last
//!   answer: idle keep-alive connections close after it, as with hyper's timer); a larger head
//!   is hyper's (its 431), so a head handed over is whole and hyper's timer never restarts. Only a connection's first request may hand it over as HTTP/2; a
//!   later hand-off is to hyper's HTTP/1 connection, as hyper's own connection would stay.
//! * **Answers** are written by hyper's rules ([`response`]); the body as it comes, never
//!   faster than the client takes it ([`send`]).
//! * **The client leaving.** While a request waits for its answer or its body is sent, the
//!   socket is watched: a client that closes its side cancels the request, as hyper does.
//!   A pipelined request waits in the buffer; nothing more is read meanwhile.
//! * **Graceful close** ([`Graceful`]): an idle connection closes at once, a busy one after
//!   its answer (with `Connection: close` when it is asked before the answer's head), and no
//!   request starts after it, even one already buffered; after a hand-off, hyper is told.
//!
//! Hand-written because hyper's server is built for any exchange and pays for it on every
//! request; see `docs/benchmarks.md` for what this path saves.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::task::AtomicWaker;
use http_body::Body as HttpBody;
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, Sleep};

use crate::{BoxError, Request};

mod prefixed;
mod request;
mod response;
mod send;
#[cfg(test)]
mod tests;

pub(super) use prefixed::Prefixed;
use request::{Head, NotHere};
use response::{BodyLen, Framing};
use send::{SendError, Sending};

/// Bytes read at once while waiting for a head (hyper's first read is as large).
const READ_BUFFER: usize = 8 * 1024;

/// The HTTP/2 connection preface (RFC 9113 §3.4): a connection that starts with it is hyper's.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The listener's settings this path reads.
#[derive(Debug, Clone, Copy)]
pub(super) struct Settings {
    /// How long a connection may wait for its next request (`header_read_timeout`).
    pub(super) idle: Duration,
    /// Bytes buffered beyond which hyper judges the head (`max_head_bytes`: its 431).
    pub(super) max_head: usize,
}

/// A graceful close asked of one connection, on either path. (An `AtomicWaker`, not a
/// `Notify`: the connection's task registers for it at every wait between requests, and a
/// `Notify` takes a lock to do so.)
#[derive(Debug, Default)]
pub(super) struct Graceful {
    asked: AtomicBool,
    waker: AtomicWaker,
}

impl Graceful {
    /// Asks the connection to close once its request in flight is answered.
    pub(super) fn ask(&self) {
        self.asked.store(true, Ordering::Release);
        self.waker.wake();
    }

    fn asked(&self) -> bool {
        self.asked.load(Ordering::Acquire)
    }

    /// Whether a close is asked; if not, `cx` is woken when it is.
    fn poll_asked(&self, cx: &mut Context<'_>) -> bool {
        if self.asked() {
            return true;
        }
        self.waker.register(cx.waker());
        self.asked()
    }

    /// Returns once a close is asked.
    async fn wait(&self) {
        std::future::poll_fn(|cx| {
            if self.poll_asked(cx) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }

    /// Runs hyper's `connection`, calling `close` on it (its `graceful_shutdown`) once a
    /// close is asked.
    pub(super) async fn follow<C: Future>(
        self: Arc<Self>,
        connection: C,
        close: impl FnOnce(Pin<&mut C>),
    ) -> C::Output {
        let mut connection = pin!(connection);
        if !self.asked() {
            tokio::select! {
                ended = connection.as_mut() => return ended,
                () = self.wait() => {}
            }
        }
        close(connection.as_mut());
        connection.await
    }
}

/// Serves `io` on this path: each request through `answer`, until the client closes, the
/// connection idles out, a close is asked, or a request needs hyper (`hyper` then serves the
/// connection with the bytes read so far put back in front; `true` while no request was
/// served here, when HTTP/2 is still possible).
pub(super) async fn serve<IO, A, F, B, H, HF>(
    mut io: IO,
    settings: Settings,
    graceful: Arc<Graceful>,
    answer: A,
    hyper: H,
) -> Result<(), BoxError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    A: Fn(Request) -> F,
    F: Future<Output = Result<http::Response<B>, std::convert::Infallible>>,
    B: HttpBody<Data = Bytes, Error = BoxError> + Unpin,
    H: FnOnce(Prefixed<IO>, bool) -> HF,
    HF: Future<Output = Result<(), BoxError>>,
{
    let mut buf = BytesMut::with_capacity(READ_BUFFER);
    // Answer heads and small frames: one buffer a connection, its memory taken back for the
    // next answer once the last one's bytes were written (no allocation an answer).
    let mut out = BytesMut::new();
    let mut first = true;
    let mut idle = Idle {
        timer: None,
        limit: settings.idle,
    };
    loop {
        let Head {
            request,
            close: asked_close,
        } = match next_head(
            &mut io,
            &mut buf,
            first,
            &mut idle,
            &graceful,
            settings.max_head,
        )
        .await
        {
            Ok(head) => head,
            Err(Ending::Close) => {
                let _ = io.shutdown().await;
                return Ok(());
            }
            // The first hand-off may find HTTP/2; a later one is HTTP/1, as hyper's own
            // connection would have stayed.
            Err(Ending::Hyper) => return hyper(Prefixed::new(buf.freeze(), io), first).await,
        };
        first = false;
        let head_only = request.method() == http::Method::HEAD;
        let request = request.map(|()| empty());
        // Pinned here, not passed on: a route's future is large, and each move copies it.
        let mut pending = pin!(answer(request));
        let answered = std::future::poll_fn(|cx: &mut Context<'_>| {
            if let Poll::Ready(output) = pending.as_mut().poll(cx) {
                return Poll::Ready(Some(output));
            }
            // The client's close while it waits cancels the request, as in hyper.
            match send::watch(&mut io, &mut buf, cx) {
                Ok(()) => Poll::Pending,
                Err(_) => Poll::Ready(None),
            }
        });
        let Some(Ok(response)) = answered.await else {
            return Ok(());
        };
        let close = asked_close || graceful.asked();
        if !respond(&mut io, (&mut buf, &mut out), response, head_only, close).await? {
            let _ = io.shutdown().await;
            return Ok(());
        }
    }
}

/// The wait for a connection's next request, bounded by `header_read_timeout`. One timer for
/// the connection's life, re-armed only when it fires early (the connection was busy since it
/// was set): a wait costs a clock read, not a timer of its own.
struct Idle {
    timer: Option<Pin<Box<Sleep>>>,
    limit: Duration,
}

impl Idle {
    /// Whether the connection has waited `limit` since `since`; if not, `cx` is woken when it
    /// may have.
    fn poll_over(&mut self, since: Instant, cx: &mut Context<'_>) -> bool {
        let deadline = since + self.limit;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        while timer.as_mut().poll(cx).is_ready() {
            if Instant::now() >= deadline {
                return true;
            }
            timer.as_mut().reset(deadline);
        }
        false
    }
}

/// Why a connection leaves this path.
#[derive(Debug)]
enum Ending {
    /// It closes: the client closed it, it waited too long, or a close was asked.
    Close,
    /// hyper serves the rest, from the bytes buffered.
    Hyper,
}

/// The next request's head, read here. A close asked starts no new request, even one already
/// buffered (as hyper's connection, its keep-alive off, does). Before the first request the
/// socket's own first-bytes deadline bounds the wait; a head that has begun, and any later
/// wait, must complete within `idle`'s limit; more than `max_head` bytes are hyper's to judge.
async fn next_head<IO: AsyncRead + Unpin>(
    io: &mut IO,
    buf: &mut BytesMut,
    first: bool,
    idle: &mut Idle,
    graceful: &Graceful,
    max_head: usize,
) -> Result<Head, Ending> {
    if graceful.asked() {
        return Err(Ending::Close);
    }
    let mut since = Instant::now();
    if buf.is_empty() {
        let bounded = (!first).then_some(&mut *idle);
        if !next_bytes(io, buf, bounded, since, graceful).await {
            return Err(Ending::Close);
        }
        if first {
            since = Instant::now();
        }
    }
    if first && H2_PREFACE.starts_with(&buf[..buf.len().min(H2_PREFACE.len())]) {
        return Err(Ending::Hyper);
    }
    loop {
        if buf.len() > max_head {
            return Err(Ending::Hyper);
        }
        match request::parse(buf) {
            Ok(head) => return Ok(head),
            Err(NotHere::Partial) => {}
            Err(NotHere::Hyper) => return Err(Ending::Hyper),
        }
        // A head still arriving is read on here, within the same wait, so that a client
        // cannot restart hyper's header timer by handing it half a head; once it passes
        // `max_head` it is hyper's, whose buffer is then full: its 431 at once.
        if !next_bytes(io, buf, Some(&mut *idle), since, graceful).await {
            return Err(Ending::Close);
        }
    }
}

/// Waits for more bytes into `buf`; `false` when the connection is to close instead: the
/// client closed it, it has waited `idle`'s limit since `since` (no limit without `idle`), or
/// a close was asked.
async fn next_bytes<IO: AsyncRead + Unpin>(
    io: &mut IO,
    buf: &mut BytesMut,
    mut idle: Option<&mut Idle>,
    since: Instant,
    graceful: &Graceful,
) -> bool {
    if graceful.asked() {
        return false;
    }
    // Takes back the whole allocation once the last request's values are dropped.
    buf.reserve(READ_BUFFER);
    std::future::poll_fn(|cx| {
        match tokio_util::io::poll_read_buf(Pin::new(&mut *io), cx, buf) {
            Poll::Ready(read) => return Poll::Ready(matches!(read, Ok(n) if n > 0)),
            Poll::Pending => {}
        }
        let over = idle.as_mut().is_some_and(|idle| idle.poll_over(since, cx));
        if over || graceful.poll_asked(cx) {
            return Poll::Ready(false);
        }
        Poll::Pending
    })
    .await
}

/// Writes `response` (`buf` is the connection's read buffer, `out` its write buffer); whether
/// the connection may carry another request.
async fn respond<IO, B>(
    io: &mut IO,
    (buf, out): (&mut BytesMut, &mut BytesMut),
    response: http::Response<B>,
    head_only: bool,
    close: bool,
) -> Result<bool, BoxError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    B: HttpBody<Data = Bytes, Error = BoxError> + Unpin,
{
    let (parts, body) = response.into_parts();
    let len = if body.is_end_stream() {
        BodyLen::Empty
    } else {
        body.size_hint()
            .exact()
            .map_or(BodyLen::Unknown, BodyLen::Known)
    };
    out.clear();
    out.reserve(READ_BUFFER);
    let (framing, close, body) = match response::encode(&parts, len, head_only, close, out) {
        // Nothing to send (HEAD, 204, 304, an empty body): the body is not asked, as in hyper.
        Ok((framing, close)) => (
            framing,
            close,
            (framing != Framing::Length(0)).then_some(body),
        ),
        Err(why) => {
            // As hyper: the client gets a 500, and the connection closes.
            tracing::warn!(why, status = %parts.status, "an answer HTTP/1.1 cannot carry");
            out.clear();
            response::failed(out);
            (Framing::Length(0), true, None)
        }
    };
    crate::http1::recycle(parts.headers);
    match Sending::new(io, buf, out, body, framing).await {
        Ok(whole) => Ok(whole && !close),
        // The client is gone: nothing to report.
        Err(SendError::Gone) => Ok(false),
        Err(error) => Err(error.into()),
    }
}

/// The body of a request this path serves: none. (A zero-sized box: no allocation.)
fn empty() -> crate::Body {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed()
}
