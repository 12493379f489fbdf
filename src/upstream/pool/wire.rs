//! pagegate's own HTTP/1.1 exchange for the hop's common case ([`send`]): a `GET` or `HEAD`
//! with no body and no upgrade, on a connection of the pool's own.
//!
//! Written by hand over httparse (the parser hyper uses) because hyper's client, built for any
//! exchange, spends on every request a channel between the request's task and a connection
//! task, the wake-ups between the two, and its general encoder and decoder
//! (`bench/instructions.sh` counts what this saves). Every other request (a body, an upgrade,
//! another method, HTTP/2) still goes through hyper, and so do the server's side and its
//! request-smuggling rules.
//!
//! What an answer must be to be read (RFC 9112 §6); anything else is refused as the exchange
//! failing (the client gets 502) and its connection closed:
//! - a head of at most [`MAX_HEAD`] bytes and [`MAX_HEADERS`] fields, with no obsolete line
//!   folding and no byte a header value cannot hold;
//! - informational answers (1xx) are skipped, but `101`, which is handed on with no body and
//!   its connection closed (the caller refuses it: nothing asked for an upgrade);
//! - HEAD, `204` and `304` answers have no body whatever their head says;
//! - `Transfer-Encoding` must say `chunked` and nothing else (another coding would reach the
//!   client undone), and not in an HTTP/1.0 answer. With `Content-Length` beside it, chunked
//!   wins (RFC 9112 §6.3): `Content-Length` is removed, so that the client never sees both
//!   framings a smuggler plays against each other, and the connection is closed after;
//! - `Content-Length` must say one number, however many times; with neither header, the body
//!   runs to the close;
//! - a chunk-size line starts with a hex digit and ends with CRLF, within 4 KiB; trailers
//!   stay within 16 KiB.
//!
//! A connection goes back to the pool only when its answer was read to its exact end with
//! nothing after it, and the backend keeps it alive (HTTP/1.1 without `Connection: close`,
//! HTTP/1.0 with `Connection: keep-alive`). At checkout, one with anything to read (stray
//! bytes, or its close) is dropped; an idle one the backend closed otherwise waits for the
//! reaper (`pool_idle_timeout`). A reused connection that fails before the first byte of its
//! answer is retried once on a new one, as browsers and nginx retry idempotent requests
//! (RFC 9110 §9.2.2): the backend may have seen the request (one whose keep-alive timer
//! fired as it arrived has not).

mod body;
mod head;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::BufMut as _;
use bytes::BytesMut;
use http::Method;
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING, UPGRADE};
use hyper_util::rt::TokioIo;
use std::future::Future as _;
use tokio::io::{AsyncRead, AsyncWriteExt as _, ReadBuf};

use body::Framing;
pub(crate) use body::WireBody;
pub(super) use head::only_chunked;
use head::{framing, parse_head};

use super::{Answer, Inner, Io, Leased, SendError};
use crate::Request;

/// The largest answer head read, in bytes: hyper's client default (8 KiB + 100 × 4 KiB).
pub(super) const MAX_HEAD: usize = 8192 + 4096 * 100;

/// The most header fields an answer head may have: hyper's client default.
pub(super) const MAX_HEADERS: usize = 100;

/// How much room a read asks for.
const READ_SIZE: usize = 16 * 1024;

/// Why an exchange on pagegate's own HTTP/1.1 path failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WireError {
    /// The connection failed.
    #[error("the upstream connection failed")]
    Io(#[from] io::Error),
    /// The backend closed the connection before its answer ended.
    #[error("the upstream closed the connection before its answer ended")]
    Closed,
    /// The answer cannot be read exactly.
    #[error("the upstream's answer is malformed: {0}")]
    Malformed(&'static str),
}

/// A connection of the pool's own and what has been read from it but not yet used.
#[derive(Debug)]
pub(super) struct Conn {
    /// Boxed: a TLS stream is large, and a connection moves through several futures on each
    /// exchange.
    io: Box<TokioIo<Io>>,
    buf: BytesMut,
}

impl Conn {
    fn new(io: Io) -> Self {
        Self {
            io: Box::new(TokioIo::new(io)),
            buf: BytesMut::new(),
        }
    }

    /// Whether an idle connection has nothing to say: no stray bytes, no close. Costs no
    /// system call when the last read left the socket drained (tokio remembers it); what the
    /// runtime has not yet seen arrive is not seen here either, as with hyper.
    pub(super) fn is_quiet(&mut self) -> bool {
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        let mut probe = [0u8; 1];
        let mut probe = ReadBuf::new(&mut probe);
        let io = &mut self.io;
        // Unconstrained: a task out of its cooperative budget would otherwise be told
        // `Pending` without the socket being looked at.
        let look = tokio::task::unconstrained(std::future::poll_fn(|cx| {
            Poll::Ready(Pin::new(&mut *io).poll_read(cx, &mut probe))
        }));
        matches!(
            std::pin::pin!(look).poll(&mut cx),
            Poll::Ready(Poll::Pending)
        )
    }

    /// Reads at most `want` bytes of what the socket has into the buffer; `Ok(0)` at its close.
    fn poll_fill(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<usize>> {
        self.buf.reserve(want);
        let mut room = (&mut self.buf).limit(want);
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut room)
    }
}

/// Whether `req` takes the path of this module: `GET` or `HEAD`, its body ended, no framing
/// or upgrade header.
pub(super) fn fits(req: &Request) -> bool {
    use http_body::Body as _;
    matches!(*req.method(), Method::GET | Method::HEAD)
        && req.body().is_end_stream()
        && !req.headers().contains_key(TRANSFER_ENCODING)
        && !req.headers().contains_key(UPGRADE)
        && req
            .headers()
            .get(CONTENT_LENGTH)
            .is_none_or(|length| length == "0")
}

/// Sends `req` (one that [`fits`]) on a pooled or new connection of the pool's own. A pooled
/// connection that fails before any of the answer came is followed by one try on a new
/// connection, never more.
pub(super) async fn send(pool: Arc<Inner>, req: Request) -> Result<Answer, SendError> {
    let head_only = req.method() == Method::HEAD;
    let head = encode(&req);
    crate::http1::recycle(req.into_parts().0.headers);
    let mut pooled = pool.checkout_wire();
    loop {
        let reused = pooled.is_some();
        let conn = match pooled.take() {
            Some(conn) => conn,
            None => Conn::new(pool.connect().await?),
        };
        match exchange(conn, &head, head_only).await {
            Ok(Exchanged {
                parts,
                conn,
                framing,
                keep,
            }) => {
                let body = WireBody::new(conn, framing, keep.then(|| Arc::clone(&pool)));
                return Ok(http::Response::from_parts(parts, Leased::wire(body)));
            }
            Err(failed) if reused && !failed.answered => {}
            Err(failed) => return Err(SendError::Exchange(failed.error.into())),
        }
    }
}

/// The request head as it goes on the wire: the URI in origin form, every header as it is.
fn encode(req: &Request) -> Vec<u8> {
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let mut head = Vec::with_capacity(512);
    head.extend_from_slice(req.method().as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(target.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in req.headers() {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// What an exchange gives.
struct Exchanged {
    /// The answer's head.
    parts: http::response::Parts,
    conn: Conn,
    /// How its body is framed.
    framing: Framing,
    /// Whether the connection may carry another exchange after it.
    keep: bool,
}

/// Why an exchange failed, and whether any of the answer had come (then it is not retried).
struct Failed {
    error: WireError,
    answered: bool,
}

impl Failed {
    fn new(error: impl Into<WireError>, answered: bool) -> Self {
        Self {
            error: error.into(),
            answered,
        }
    }
}

/// Writes the head and reads the answer's, past informational ones.
async fn exchange(mut conn: Conn, head: &[u8], head_only: bool) -> Result<Exchanged, Failed> {
    let written = async {
        conn.io.write_all(head).await?;
        conn.io.flush().await
    };
    written.await.map_err(|e| Failed::new(e, false))?;
    let mut answered = false;
    loop {
        let mut parts = read_head(&mut conn, answered).await?;
        answered = true;
        let (framing, keep) = framing(&mut parts, head_only).map_err(|e| Failed::new(e, true))?;
        // `None`: informational, the answer is still to come.
        if let Some(framing) = framing {
            return Ok(Exchanged {
                parts,
                conn,
                framing,
                keep,
            });
        }
    }
}

/// Reads one answer head; `answered` says an informational one came before it.
async fn read_head(conn: &mut Conn, answered: bool) -> Result<http::response::Parts, Failed> {
    loop {
        if !conn.buf.is_empty() {
            match parse_head(&mut conn.buf) {
                Ok(Some(parts)) => return Ok(parts),
                Ok(None) if conn.buf.len() >= MAX_HEAD => {
                    return Err(Failed::new(WireError::Malformed("head too large"), true));
                }
                Ok(None) => {}
                Err(error) => return Err(Failed::new(error, true)),
            }
        }
        let answered = answered || !conn.buf.is_empty();
        let room = READ_SIZE.min(MAX_HEAD - conn.buf.len());
        match std::future::poll_fn(|cx| conn.poll_fill(cx, room)).await {
            Ok(0) => return Err(Failed::new(WireError::Closed, answered)),
            Ok(_) => {}
            Err(error) => return Err(Failed::new(error, answered)),
        }
    }
}
