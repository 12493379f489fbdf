//! An answer's body on pagegate's own HTTP/1.1 server path ([`Sending`]): framed, written as
//! the backend hands it over, and never faster than the client takes it (frames are gathered
//! up to [`GATHER`] bytes, and more are asked for only once those are written, so a slow
//! client slows the backend). Frames past the answer's length are never asked for. Meanwhile
//! the socket is watched ([`watch`]): a client that closes its side cancels the answer, as
//! hyper does without half-close.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body::Body as HttpBody;
use tokio::io::{AsyncRead, AsyncWrite};

use super::response::Framing;
use crate::BoxError;

/// Bytes of body gathered before a write, at most: a slow client holds no more than this
/// and its socket's buffer of the body.
pub(super) const GATHER: usize = 64 * 1024;

/// Frames up to this long are copied behind the head and framing (one segment for a small
/// answer); longer ones are written from their own memory.
const COPY: usize = 4 * 1024;

/// Segments one write takes at most (hyper's own bound).
const SEGMENTS: usize = 16;

/// Why an answer was not sent whole.
#[derive(Debug, thiserror::Error)]
pub(super) enum SendError {
    #[error("the client closed the connection")]
    Gone,
    #[error("writing to the client: {0}")]
    Io(#[from] io::Error),
    #[error("the answer's body failed: {0}")]
    Body(BoxError),
    #[error("the answer's body ended {0} bytes short of its length")]
    Short(u64),
}

/// Reads what the client sends while it waits for an answer: `Err` once it closed its side
/// or its socket failed. Nothing is read while its next request waits in `read` (then its
/// close is seen after that request, as hyper sees it).
pub(super) fn watch<IO: AsyncRead + Unpin>(
    io: &mut IO,
    read: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Result<(), SendError> {
    if read.is_empty() {
        match tokio_util::io::poll_read_buf(Pin::new(&mut *io), cx, read) {
            Poll::Ready(Ok(0) | Err(_)) => return Err(SendError::Gone),
            Poll::Ready(Ok(_)) | Poll::Pending => {}
        }
    }
    Ok(())
}

/// One answer's body on its way out, behind its head.
pub(super) struct Sending<'a, IO, B> {
    io: &'a mut IO,
    read: &'a mut BytesMut,
    /// `None` once it ended (or for an answer without a body).
    body: Option<B>,
    framing: Framing,
    /// The head, framing and small frames not yet sealed into `queue`: the connection's own
    /// buffer, whose memory comes back to it once what was sealed has been written.
    tail: &'a mut BytesMut,
    /// What is to be written, in order, in one vectored write.
    queue: VecDeque<Bytes>,
    /// Bytes in `queue` and `tail`.
    queued: usize,
    /// Whether the body held more than its length (the rest was not sent).
    cut: bool,
    /// Why the body failed: reported once what it gave before is written.
    failed: Option<SendError>,
}

impl<'a, IO, B> Sending<'a, IO, B> {
    /// Sends `head`, then `body` framed by `framing`, on `io`, watching for the client's close
    /// (what it sends meanwhile goes into `read`).
    pub(super) fn new(
        io: &'a mut IO,
        read: &'a mut BytesMut,
        head: &'a mut BytesMut,
        body: Option<B>,
        framing: Framing,
    ) -> Self {
        Self {
            io,
            read,
            body,
            framing,
            queued: head.len(),
            tail: head,
            queue: VecDeque::new(),
            cut: false,
            failed: None,
        }
    }
}

impl<IO, B> Sending<'_, IO, B>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    B: HttpBody<Data = Bytes, Error = BoxError> + Unpin,
{
    /// Takes one data frame into the queue, framed.
    fn take(&mut self, mut data: Bytes) {
        match &mut self.framing {
            Framing::Length(left) => {
                let len = data.len() as u64;
                if len > *left {
                    // Never more than the head said: the rest would be read as another answer.
                    self.cut = true;
                    data.truncate(usize::try_from(*left).unwrap_or(usize::MAX));
                }
                *left -= data.len() as u64;
                self.push(data);
            }
            Framing::Chunked if data.is_empty() => {}
            Framing::Chunked => {
                let mut size = [0u8; 18];
                self.put(hex(data.len(), &mut size));
                self.put(b"\r\n");
                self.push(data);
                self.put(b"\r\n");
            }
        }
    }

    /// Copies `bytes` (framing, a small frame) behind what is queued. The buffer is never grown:
    /// when `bytes` do not fit, what it holds becomes a segment and they go to a new buffer of
    /// its first size, so that a connection keeps no more than that between answers.
    fn put(&mut self, bytes: &[u8]) {
        if bytes.len() > self.tail.capacity() - self.tail.len() {
            self.seal();
        }
        self.tail.put_slice(bytes);
        self.queued += bytes.len();
    }

    /// Queues a frame: small ones copied, others as they are.
    fn push(&mut self, data: Bytes) {
        if data.len() <= COPY {
            self.put(&data);
            return;
        }
        self.seal();
        self.queued += data.len();
        self.queue.push_back(data);
    }

    /// Moves what `tail` holds into the queue (its memory shared, not copied).
    fn seal(&mut self) {
        if !self.tail.is_empty() {
            self.queue.push_back(self.tail.split().freeze());
        }
    }

    /// Frames the body's end.
    fn end(&mut self) -> Result<(), SendError> {
        match self.framing {
            Framing::Chunked => self.put(b"0\r\n\r\n"),
            Framing::Length(0) => {}
            Framing::Length(left) => return Err(SendError::Short(left)),
        }
        Ok(())
    }

    /// Whether the queue may take another frame before a write.
    fn room(&self) -> bool {
        self.queued < GATHER && self.queue.len() < SEGMENTS - 1
    }

    /// Writes what is queued; `Ready` once all of it is.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        // All of it in one buffer (a small answer): written from there, with no segment made.
        while self.queue.is_empty() && !self.tail.is_empty() {
            let n = ready!(Pin::new(&mut *self.io).poll_write(cx, self.tail))?;
            if n == 0 {
                return Poll::Ready(Err(io::Error::from(io::ErrorKind::WriteZero).into()));
            }
            self.tail.advance(n);
            self.queued -= n;
        }
        self.seal();
        while !self.queue.is_empty() {
            let mut slices = [IoSlice::new(&[]); SEGMENTS];
            for (slice, segment) in slices.iter_mut().zip(&self.queue) {
                *slice = IoSlice::new(segment);
            }
            let count = self.queue.len().min(SEGMENTS);
            let polled = Pin::new(&mut *self.io).poll_write_vectored(cx, &slices[..count]);
            let mut n = ready!(polled)?;
            if n == 0 {
                return Poll::Ready(Err(io::Error::from(io::ErrorKind::WriteZero).into()));
            }
            self.queued -= n;
            while let Some(front) = self.queue.front_mut() {
                if n < front.len() {
                    front.advance(n);
                    break;
                }
                n -= front.len();
                self.queue.pop_front();
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO, B> Future for Sending<'_, IO, B>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    B: HttpBody<Data = Bytes, Error = BoxError> + Unpin,
{
    /// Whether the connection may carry another request.
    type Output = Result<bool, SendError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let polled = this.drive(cx);
        if polled.is_pending() {
            // Waiting for the body or the client: the client's close must wake this task.
            watch(this.io, this.read, cx)?;
        }
        polled
    }
}

impl<IO, B> Sending<'_, IO, B>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    B: HttpBody<Data = Bytes, Error = BoxError> + Unpin,
{
    /// Sends what the body has ready; `Ready` once all of it is sent.
    fn drive(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, SendError>> {
        let this = self;
        loop {
            // Gathers frames that are ready behind the head, up to a write's worth.
            while this.room() {
                let Some(body) = this.body.as_mut() else {
                    break;
                };
                match Pin::new(body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        // Trailers are dropped: see `response`.
                        if let Ok(data) = frame.into_data() {
                            this.take(data);
                        }
                        // Its length sent, or the body says it has ended: not asked again, as
                        // in hyper (a body longer than its length is not read on).
                        let ended = this.framing == Framing::Length(0)
                            || this.body.as_ref().is_some_and(HttpBody::is_end_stream);
                        if ended {
                            this.body = None;
                            this.failed = this.end().err();
                        }
                    }
                    Poll::Ready(Some(Err(error))) => {
                        this.body = None;
                        this.failed = Some(SendError::Body(error));
                    }
                    Poll::Ready(None) => {
                        this.body = None;
                        this.failed = this.end().err();
                    }
                    Poll::Pending => break,
                }
            }
            if this.queued > 0 {
                ready!(this.poll_write_out(cx))?;
                continue;
            }
            ready!(Pin::new(&mut *this.io).poll_flush(cx))?;
            if this.body.is_some() {
                return Poll::Pending;
            }
            // A failed body's connection closes without its end: the client sees it cut.
            return Poll::Ready(match this.failed.take() {
                Some(error) => Err(error),
                None => Ok(!this.cut),
            });
        }
    }
}

/// `n` in lower-case hex, without leading zeros, written into the end of `into`.
fn hex(mut n: usize, into: &mut [u8; 18]) -> &[u8] {
    let mut at = into.len();
    loop {
        at -= 1;
        into[at] = b"0123456789abcdef"[n & 0xf];
        n >>= 4;
        if n == 0 {
            return &into[at..];
        }
    }
}
