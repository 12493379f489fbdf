//! The body of an answer read on pagegate's own HTTP/1.1 path ([`WireBody`]): read from the
//! socket only when polled, so a slow client slows the backend; framed by length, by chunks
//! (trailers included) or by the connection's close.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf as _, Bytes};
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body::{Frame, SizeHint};

use super::{Conn, MAX_HEADERS, WireError};
use crate::upstream::pool::Inner;

/// The longest chunk-size line read, extensions included.
const MAX_CHUNK_LINE: usize = 4096;

/// The largest trailer section read (hyper's client reads as much).
const MAX_TRAILERS: usize = 16 * 1024;

/// The most a body read asks room for.
const BODY_READ: usize = 64 * 1024;

/// How an answer's body ends.
#[derive(Debug, Clone, Copy)]
pub(in crate::upstream::pool) enum Framing {
    /// After this many more bytes.
    Length(u64),
    /// At the last chunk and its trailers.
    Chunked(Chunk),
    /// At the connection's close.
    ToClose,
}

impl Framing {
    pub(in crate::upstream::pool) fn chunked() -> Self {
        Self::Chunked(Chunk::Size)
    }
}

/// Where a chunked body stands.
#[derive(Debug, Clone, Copy)]
pub(in crate::upstream::pool) enum Chunk {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// Before the CRLF that ends a chunk's data.
    DataEnd,
    /// After the last chunk: trailer fields, then an empty line.
    Trailers,
}

/// What one look at the buffer gives.
enum Step {
    Frame(Frame<Bytes>),
    /// More bytes are needed; this much room is asked for.
    Read(usize),
    End,
    Fail(WireError),
}

/// The body of an answer read on pagegate's own HTTP/1.1 path. Read to its end, its connection
/// goes back to the pool (if the backend keeps it and nothing followed the answer); dropped
/// before, or failed, the connection is closed.
#[derive(Debug)]
pub(crate) struct WireBody {
    conn: Option<Conn>,
    framing: Framing,
    /// Where the connection goes at the body's end; `None`: it is closed.
    pool: Option<Arc<Inner>>,
}

impl WireBody {
    pub(in crate::upstream::pool) fn new(
        conn: Conn,
        framing: Framing,
        pool: Option<Arc<Inner>>,
    ) -> Self {
        let mut body = Self {
            conn: Some(conn),
            framing,
            pool,
        };
        if matches!(body.framing, Framing::Length(0)) {
            body.finish();
        }
        body
    }

    /// The answer has ended: its connection goes back to the pool, if it may carry another
    /// exchange and nothing came after the answer.
    fn finish(&mut self) {
        if let (Some(conn), Some(pool)) = (self.conn.take(), self.pool.take())
            && conn.buf.is_empty()
        {
            pool.put_wire(conn);
        }
    }

    /// What the buffered bytes give under the body's framing.
    fn step(&mut self) -> Step {
        let Some(conn) = self.conn.as_mut() else {
            return Step::End;
        };
        let buf = &mut conn.buf;
        match &mut self.framing {
            Framing::Length(0) => Step::End,
            Framing::Length(left) => take(buf, left).map_or(Step::Read(room(*left)), Step::Frame),
            Framing::ToClose if buf.is_empty() => Step::Read(BODY_READ),
            Framing::ToClose => Step::Frame(Frame::data(buf.split().freeze())),
            Framing::Chunked(chunk) => chunked(buf, chunk),
        }
    }
}

/// Room to ask for when `left` bytes of the body are still to come.
fn room(left: u64) -> usize {
    usize::try_from(left).map_or(BODY_READ, |left| left.min(BODY_READ))
}

/// Up to `left` buffered bytes as a data frame, if any are buffered.
fn take(buf: &mut bytes::BytesMut, left: &mut u64) -> Option<Frame<Bytes>> {
    if buf.is_empty() {
        return None;
    }
    let n = usize::try_from(*left).map_or(buf.len(), |left| left.min(buf.len()));
    *left -= n as u64;
    Some(Frame::data(buf.split_to(n).freeze()))
}

/// One step of a chunked body.
fn chunked(buf: &mut bytes::BytesMut, chunk: &mut Chunk) -> Step {
    loop {
        match chunk {
            Chunk::Size => match chunk_size(buf) {
                Ok(Some(size)) => {
                    *chunk = if size == 0 {
                        Chunk::Trailers
                    } else {
                        Chunk::Data(size)
                    };
                }
                Ok(None) => return Step::Read(super::READ_SIZE),
                Err(error) => return Step::Fail(error),
            },
            Chunk::Data(left) => {
                let Some(frame) = take(buf, left) else {
                    return Step::Read(room(*left));
                };
                if *left == 0 {
                    *chunk = Chunk::DataEnd;
                }
                return Step::Frame(frame);
            }
            Chunk::DataEnd if buf.len() < 2 => return Step::Read(super::READ_SIZE),
            Chunk::DataEnd if buf.starts_with(b"\r\n") => {
                buf.advance(2);
                *chunk = Chunk::Size;
            }
            Chunk::DataEnd => return Step::Fail(WireError::Malformed("chunk without its CRLF")),
            Chunk::Trailers => return trailers(buf),
        }
    }
}

/// The size a complete chunk-size line at the start of `buf` says, taken out of it; `None`
/// while incomplete. Stricter than httparse alone, which reads an empty line as `0` (a body
/// cut short, passed as whole) and a bare LF as a line's end.
fn chunk_size(buf: &mut bytes::BytesMut) -> Result<Option<u64>, WireError> {
    let bad = WireError::Malformed("bad chunk size");
    if buf.first().is_some_and(|b| !b.is_ascii_hexdigit()) {
        return Err(bad);
    }
    let Some(end) = memchr::memchr(b'\n', buf) else {
        if buf.len() > MAX_CHUNK_LINE {
            return Err(WireError::Malformed("chunk-size line too long"));
        }
        return Ok(None);
    };
    if end > MAX_CHUNK_LINE || buf[..end].last() != Some(&b'\r') {
        return Err(bad);
    }
    match httparse::parse_chunk_size(&buf[..=end]) {
        Ok(httparse::Status::Complete((used, size))) if used == end + 1 => {
            buf.advance(used);
            Ok(Some(size))
        }
        _ => Err(bad),
    }
}

/// The trailer section after the last chunk: a trailers frame, or the end if it is empty.
fn trailers(buf: &mut bytes::BytesMut) -> Step {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let (used, map) = match httparse::parse_headers(buf, &mut fields) {
        // Complete in one read, the section may still be past the limit.
        Ok(httparse::Status::Complete((used, _))) if used > MAX_TRAILERS => {
            return Step::Fail(WireError::Malformed("trailers too large"));
        }
        Ok(httparse::Status::Complete((used, fields))) => {
            let mut map = HeaderMap::with_capacity(fields.len());
            for field in fields {
                let (Ok(name), Ok(value)) = (
                    HeaderName::from_bytes(field.name.as_bytes()),
                    HeaderValue::from_bytes(field.value),
                ) else {
                    return Step::Fail(WireError::Malformed("bad trailer field"));
                };
                map.append(name, value);
            }
            (used, map)
        }
        Ok(httparse::Status::Partial) if buf.len() >= MAX_TRAILERS => {
            return Step::Fail(WireError::Malformed("trailers too large"));
        }
        Ok(httparse::Status::Partial) => return Step::Read(super::READ_SIZE),
        Err(_) => return Step::Fail(WireError::Malformed("trailers do not parse")),
    };
    buf.advance(used);
    if map.is_empty() {
        Step::End
    } else {
        Step::Frame(Frame::trailers(map))
    }
}

impl http_body::Body for WireBody {
    type Data = Bytes;
    type Error = WireError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, WireError>>> {
        let this = self.get_mut();
        loop {
            let fail = |this: &mut Self, error| {
                this.conn = None;
                Poll::Ready(Some(Err(error)))
            };
            let want = match this.step() {
                Step::Frame(frame) => {
                    // The trailers, or the last bytes of a sized body: the answer has ended.
                    if frame.is_trailers() || matches!(this.framing, Framing::Length(0)) {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Step::End => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Step::Fail(error) => return fail(this, error),
                Step::Read(want) => want,
            };
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match ready!(conn.poll_fill(cx, want)) {
                Ok(0) if matches!(this.framing, Framing::ToClose) => {
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) => return fail(this, WireError::Closed),
                Ok(_) => {}
                Err(error) => return fail(this, WireError::Io(error)),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none() || matches!(self.framing, Framing::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match (self.conn.as_ref(), self.framing) {
            (None, _) => SizeHint::with_exact(0),
            (Some(_), Framing::Length(left)) => SizeHint::with_exact(left),
            _ => SizeHint::default(),
        }
    }
}
