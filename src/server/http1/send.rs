//! An answer's body on pagegate's own HTTP/1.1 server path ([`Sending`]): framed, written as
//! the backend hands it over, and never faster than the client takes it (the next frame is
//! asked for only once the last is written, so a slow client slows the backend). Meanwhile
//! the socket is watched ([`watch`]): a client that closes its side cancels the answer, as
//! hyper does without half-close.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body::Body as HttpBody;
use tokio::io::{AsyncRead, AsyncWrite};

use super::response::Framing;
use crate::BoxError;

/// Bytes of body gathered behind the head before a write: small frames are copied so that a
/// small answer goes out in one write.
const GATHER: usize = 16 * 1024;

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

/// One answer's body on its way out, its head already in `out`.
pub(super) struct Sending<'a, IO, B> {
    pub(super) io: &'a mut IO,
    pub(super) read: &'a mut BytesMut,
    /// `None` once it ended (or for an answer without a body).
    pub(super) body: Option<B>,
    pub(super) framing: Framing,
    /// The head, framing and small frames, written first.
    pub(super) out: BytesMut,
    /// A large frame, written after `out` in the same (vectored) write.
    pub(super) large: Bytes,
    /// Bytes of the `\r\n` after a large chunk still to write (0 to 2).
    pub(super) crlf: usize,
    /// Whether the body held more than its length (the rest was not sent).
    pub(super) cut: bool,
    /// Why the body failed: reported once what it gave before is written.
    pub(super) failed: Option<SendError>,
}

impl<IO, B> Sending<'_, IO, B>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    B: HttpBody<Data = Bytes, Error = BoxError> + Unpin,
{
    /// Takes one data frame into the buffers, framed.
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
            }
            Framing::Chunked => {
                if data.is_empty() {
                    return;
                }
                let mut size = [0u8; 18];
                let digits = hex(data.len(), &mut size);
                self.out.put_slice(digits);
                self.out.put_slice(b"\r\n");
                if data.len() > GATHER {
                    self.crlf = 2;
                    self.large = data;
                } else {
                    self.out.put_slice(&data);
                    self.out.put_slice(b"\r\n");
                }
                return;
            }
        }
        if data.len() > GATHER {
            self.large = data;
        } else {
            self.out.put_slice(&data);
        }
    }

    /// Frames the body's end.
    fn end(&mut self) -> Result<(), SendError> {
        match self.framing {
            Framing::Chunked => self.out.put_slice(b"0\r\n\r\n"),
            Framing::Length(0) => {}
            Framing::Length(left) => return Err(SendError::Short(left)),
        }
        Ok(())
    }

    /// Writes what is buffered; `Ready` once all of it is.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        while !self.out.is_empty() || !self.large.is_empty() || self.crlf > 0 {
            let crlf = &b"\r\n"[2 - self.crlf..];
            let slices = [
                IoSlice::new(&self.out),
                IoSlice::new(&self.large),
                IoSlice::new(crlf),
            ];
            let mut n = ready!(Pin::new(&mut *self.io).poll_write_vectored(cx, &slices))?;
            if n == 0 {
                return Poll::Ready(Err(io::Error::from(io::ErrorKind::WriteZero).into()));
            }
            let from_out = n.min(self.out.len());
            self.out.advance(from_out);
            n -= from_out;
            let from_large = n.min(self.large.len());
            self.large.advance(from_large);
            n -= from_large;
            self.crlf -= n.min(self.crlf);
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
            while this.large.is_empty() && this.out.len() < GATHER {
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
            let written = this.out.is_empty() && this.large.is_empty() && this.crlf == 0;
            if !written {
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
