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
//! - `Transfer-Encoding` ending in `chunked` is read chunked, other codings to the close; in an
//!   HTTP/1.0 answer it is refused. With `Content-Length` beside it, it wins, as RFC 9112
//!   §6.3 says and hyper did: `Content-Length` is removed (the client must not see both, the
//!   two framings a smuggler plays against each other) and the connection closed after;
//! - `Content-Length` must say one number, however many times; with neither header, the body
//!   runs to the close.
//!
//! A connection goes back to the pool only when its answer was read to its exact end with
//! nothing after it, and the backend keeps it alive (HTTP/1.1 without `Connection: close`,
//! HTTP/1.0 with `Connection: keep-alive`). At checkout, one with anything to read (stray
//! bytes, or its close) is dropped. A reused connection that fails before the first byte of
//! its answer is retried on a new one: `GET` and `HEAD` are idempotent (RFC 9110 §9.2.2), as
//! browsers and nginx retry them.

mod body;

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWriteExt as _, ReadBuf};

use body::Framing;
pub(crate) use body::WireBody;

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
    /// system call when the last read left the socket drained (tokio remembers it).
    pub(super) fn is_quiet(&mut self) -> bool {
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        let mut probe = [0u8; 1];
        let mut probe = ReadBuf::new(&mut probe);
        matches!(
            Pin::new(&mut self.io).poll_read(&mut cx, &mut probe),
            Poll::Pending
        )
    }

    /// Reads what the socket has into the buffer; `Ok(0)` at its close.
    fn poll_fill(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<usize>> {
        self.buf.reserve(want);
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
    }

    async fn fill(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx, READ_SIZE)).await
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

/// Sends `req` (one that [`fits`]) on a pooled or new connection of the pool's own.
pub(super) async fn send(pool: Arc<Inner>, req: Request) -> Result<Answer, SendError> {
    let head_only = req.method() == Method::HEAD;
    let head = encode(&req);
    drop(req);
    loop {
        let (conn, reused) = match pool.checkout_wire() {
            Some(conn) => (conn, true),
            None => (Conn::new(pool.connect().await?), false),
        };
        match exchange(conn, &head, head_only).await {
            Ok((parts, conn, framing, keep)) => {
                let body = WireBody::new(conn, framing, keep.then(|| Arc::clone(&pool)));
                return Ok(http::Response::from_parts(parts, Leased::wire(body)));
            }
            Err((_, false)) if reused => {}
            Err((error, _)) => return Err(SendError::Exchange(error.into())),
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

/// What an exchange gives: the answer's head, its connection, how its body is framed and
/// whether the connection may carry another exchange after it.
type Exchanged = (http::response::Parts, Conn, Framing, bool);

/// Writes the head and reads the answer's; on failure, also whether any of the answer came.
async fn exchange(
    mut conn: Conn,
    head: &[u8],
    head_only: bool,
) -> Result<Exchanged, (WireError, bool)> {
    let written = async {
        conn.io.write_all(head).await?;
        conn.io.flush().await
    };
    written.await.map_err(|e| (WireError::Io(e), false))?;
    loop {
        let mut parts = read_head(&mut conn).await?;
        let (framing, keep) = framing(&mut parts, head_only).map_err(|e| (e, true))?;
        match framing {
            Some(framing) => return Ok((parts, conn, framing, keep)),
            // Informational: the answer is still to come.
            None => continue,
        }
    }
}

/// Reads one answer head; on failure, also whether any byte of it came.
async fn read_head(conn: &mut Conn) -> Result<http::response::Parts, (WireError, bool)> {
    loop {
        if !conn.buf.is_empty() {
            match parse_head(&mut conn.buf) {
                Ok(Some(parts)) => return Ok(parts),
                Ok(None) if conn.buf.len() >= MAX_HEAD => {
                    return Err((WireError::Malformed("head too large"), true));
                }
                Ok(None) => {}
                Err(error) => return Err((error, true)),
            }
        }
        let answered = !conn.buf.is_empty();
        match conn.fill().await {
            Ok(0) => return Err((WireError::Closed, answered)),
            Ok(_) => {}
            Err(error) => return Err((WireError::Io(error), answered)),
        }
    }
}

/// Parses a complete head at the start of `buf` and takes it out; `None` while incomplete.
/// Header values share the buffer's memory, as hyper's do.
fn parse_head(buf: &mut BytesMut) -> Result<Option<http::response::Parts>, WireError> {
    // Left uninitialised for httparse to fill: zeroing 3 KiB cost more than the parse.
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut answer = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut answer,
        buf,
        &mut fields,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(WireError::Malformed("too many header fields"));
        }
        Err(_) => return Err(WireError::Malformed("head does not parse")),
    };
    let status = answer
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or(WireError::Malformed("bad status"))?;
    let version = match answer.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    // Where each field lies in the buffer, so that values can share it once frozen.
    let start = buf.as_ptr() as usize;
    let places: Vec<_> = answer
        .headers
        .iter()
        .map(|field| {
            let name = field.name.as_ptr() as usize - start;
            let value = field.value.as_ptr() as usize - start;
            (
                name,
                name + field.name.len(),
                value,
                value + field.value.len(),
            )
        })
        .collect();
    let head: Bytes = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(places.len());
    for &(name_from, name_to, value_from, value_to) in &places {
        let name = HeaderName::from_bytes(&head[name_from..name_to])
            .map_err(|_| WireError::Malformed("bad header name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice(value_from..value_to))
            .map_err(|_| WireError::Malformed("bad header value"))?;
        headers.append(name, value);
    }
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = status;
    parts.version = version;
    parts.headers = headers;
    Ok(Some(parts))
}

/// How the answer's body is framed and whether its connection may be kept; `None` for an
/// informational answer, which another follows.
fn framing(
    parts: &mut http::response::Parts,
    head_only: bool,
) -> Result<(Option<Framing>, bool), WireError> {
    let status = parts.status;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Ok((Some(Framing::Length(0)), false));
    }
    if status.is_informational() {
        return Ok((None, true));
    }
    let mut keep = keeps_alive(parts.version, &parts.headers);
    let chunked = match last_coding(&parts.headers) {
        None => None,
        Some(_) if parts.version == Version::HTTP_10 => {
            return Err(WireError::Malformed(
                "Transfer-Encoding in an HTTP/1.0 answer",
            ));
        }
        Some(last) => Some(last.eq_ignore_ascii_case(b"chunked")),
    };
    if chunked.is_some() && parts.headers.remove(CONTENT_LENGTH).is_some() {
        keep = false;
    }
    let length = content_length(&parts.headers)?;
    if head_only || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok((Some(Framing::Length(0)), keep));
    }
    Ok(match (chunked, length) {
        (Some(true), _) => (Some(Framing::chunked()), keep),
        (None, Some(length)) => (Some(Framing::Length(length)), keep),
        // Another coding, or no framing at all: the body ends with the connection.
        _ => (Some(Framing::ToClose), false),
    })
}

/// Whether the backend keeps the connection open after this answer.
fn keeps_alive(version: Version, headers: &HeaderMap) -> bool {
    let says = |word: &[u8]| {
        headers.get_all(CONNECTION).iter().any(|value| {
            value
                .as_bytes()
                .split(|&b| b == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(word))
        })
    };
    match version {
        Version::HTTP_10 => says(b"keep-alive"),
        _ => !says(b"close"),
    }
}

/// The last transfer coding named, if `Transfer-Encoding` is present (empty if it names none).
fn last_coding(headers: &HeaderMap) -> Option<&[u8]> {
    let last = headers.get_all(TRANSFER_ENCODING).iter().next_back()?;
    Some(
        last.as_bytes()
            .rsplit(|&b| b == b',')
            .next()
            .unwrap_or_default()
            .trim_ascii(),
    )
}

/// The one length every `Content-Length` value says, if there is one.
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, WireError> {
    let mut length = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        for item in value.as_bytes().split(|&b| b == b',') {
            let item = item.trim_ascii();
            let parsed =
                (!item.is_empty() && item.len() <= 19 && item.iter().all(u8::is_ascii_digit))
                    .then(|| item.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
                    .ok_or(WireError::Malformed("bad Content-Length"))?;
            if length.is_some_and(|known| known != parsed) {
                return Err(WireError::Malformed("conflicting Content-Length values"));
            }
            length = Some(parsed);
        }
    }
    Ok(length)
}
