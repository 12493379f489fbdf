//! Streaming body transforms: `pin_project_lite` wrappers over [`http_body::Body::poll_frame`].
//!
//! Nothing here collects a body: each wrapper sees one frame at a time and passes it on.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures_util::task::AtomicWaker;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use pin_project_lite::pin_project;
use prometheus_client::metrics::counter::Counter;
use tokio::time::{Instant, Sleep};

use crate::BoxError;

/// Bytes held whole (a held page, an export chunk waiting to be written) in no more memory than
/// they need: a buffer that grew (a `Vec` doubles) or was sized from a `Content-Length` the
/// body did not fill can hold far more than its bytes, and frozen as it is it would keep all
/// of it, while budgets count its bytes. Shrinking reallocates in place (`mremap` for large
/// buffers) rather than copying; a buffer with at most an eighth to spare is kept as it is.
pub(crate) fn trimmed(out: bytes::BytesMut) -> Bytes {
    if out.capacity() - out.len() <= out.len() / 8 {
        return out.freeze();
    }
    trimmed_vec(Vec::from(out))
}

/// As [`trimmed`], for bytes built in a `Vec` (a table page's body, written as rows come).
pub(crate) fn trimmed_vec(mut vec: Vec<u8>) -> Bytes {
    if vec.capacity() - vec.len() > vec.len() / 8 {
        vec.shrink_to_fit();
    }
    Bytes::from(vec)
}

/// Appends what of `data` fits under `cap` bytes to `buf`; returns how much. The buffer doubles
/// as it grows, but never past `cap`: a held page's or a checked form's bound bounds what it
/// allocates too (a `BytesMut` doubles to 16 MiB for a 10 MB page, and holds both while it
/// copies).
pub(crate) fn append_capped(buf: &mut Vec<u8>, data: &[u8], cap: usize) -> usize {
    let fits = data.len().min(cap.saturating_sub(buf.len()));
    if buf.capacity() - buf.len() < fits {
        let want = (buf.capacity() * 2).max(buf.len() + fits).min(cap);
        buf.reserve_exact(want - buf.len());
    }
    buf.extend_from_slice(&data[..fits]);
    fits
}

/// A complete body from bytes (pagegate's own answers and held pages).
pub fn full(bytes: impl Into<Bytes>) -> crate::Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A body that did not produce its next frame within the idle timeout.
#[derive(Debug, thiserror::Error)]
#[error("body idle for more than {0:?}")]
pub(crate) struct IdleTimeoutError(pub Duration);

/// Why a client's request body could not be relayed: the client's fault, not the upstream's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RequestBodyError {
    /// Nothing arrived for the idle timeout (408).
    #[error(
        "the request body stalled: nothing arrived for {0:?}; send it without pauses that long"
    )]
    Stalled(Duration),
    /// The chunked encoding could not be read (400).
    #[error("the request body's chunked encoding is malformed")]
    Malformed,
    /// The client closed its connection (or reset its HTTP/2 stream) before the body ended:
    /// its doing, not the upstream's (400, logged as `client_closed`).
    #[error(
        "the request body ended early: the connection closed or the stream was reset before all of it arrived"
    )]
    Aborted,
}

/// Marks when a request body has ended, for a timer that must start then.
#[derive(Debug, Default)]
pub(crate) struct BodyEnd {
    ended: AtomicBool,
    /// Frames taken so far: whoever waits can tell a slow body from a stuck one.
    frames: AtomicU64,
    /// The last poll found no frame ready: the body waits on its sender, not its reader.
    waiting: AtomicBool,
    waker: AtomicWaker,
}

impl BodyEnd {
    /// Whether the body has ended (or failed, or was dropped).
    pub(crate) fn ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// Whether the body has ended (or failed); registers `cx` to be woken when it does.
    pub(crate) fn poll_ended(&self, cx: &mut Context<'_>) -> bool {
        if self.ended.load(Ordering::Acquire) {
            return true;
        }
        self.waker.register(cx.waker());
        self.ended.load(Ordering::Acquire)
    }

    /// Frames taken from the body so far.
    pub(crate) fn progress(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    /// Whether the body's reader is waiting for its sender (the last poll was pending).
    pub(crate) fn waiting_on_sender(&self) -> bool {
        self.waiting.load(Ordering::Relaxed)
    }

    fn end(&self) {
        if !self.ended.swap(true, Ordering::AcqRel) {
            self.waker.wake();
        }
    }
}

pin_project! {
    /// Signals [`BodyEnd`] when the wrapped body ends, fails or is dropped, and counts its
    /// bytes in `bytes`.
    pub struct SignalEnd<B> {
        #[pin]
        inner: B,
        end: Arc<BodyEnd>,
        bytes: Counter,
    }

    impl<B> PinnedDrop for SignalEnd<B> {
        fn drop(this: Pin<&mut Self>) {
            this.project().end.end();
        }
    }
}

impl<B> SignalEnd<B> {
    /// Wraps `inner`, signalling `end` and counting its data bytes in `bytes`.
    pub(crate) fn new(inner: B, end: Arc<BodyEnd>, bytes: Counter) -> Self {
        Self { inner, end, bytes }
    }
}

impl<B: HttpBody<Data = Bytes>> HttpBody for SignalEnd<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(None | Some(Err(_))) => this.end.end(),
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes.inc_by(data.len() as u64);
                }
                this.end.waiting.store(false, Ordering::Relaxed);
                this.end.frames.fetch_add(1, Ordering::Relaxed);
                if this.inner.is_end_stream() {
                    this.end.end();
                }
            }
            Poll::Pending => this.end.waiting.store(true, Ordering::Relaxed),
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// Fails a body that pauses longer than `timeout` between two frames.
    ///
    /// The clock starts when the body first has to wait and restarts at the first wait after
    /// every frame, so a slow but steady stream is never cut; only a stall is. The timer is armed
    /// once and pushed back only when it fires early, so a stream costs one clock read per wait
    /// (none while its frames are ready when polled), not one timer
    /// registration.
    pub struct IdleTimeout<B> {
        #[pin]
        inner: B,
        #[pin]
        sleep: Option<Sleep>,
        timeout: Duration,
        last_frame: Option<Instant>,
    }
}

impl<B> IdleTimeout<B> {
    /// Wraps `inner`.
    pub(crate) fn new(inner: B, timeout: Duration) -> Self {
        Self {
            inner,
            sleep: None,
            timeout,
            last_frame: None,
        }
    }
}

impl<B> HttpBody for IdleTimeout<B>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            // The quiet spell starts at the next wait (microseconds later): a body whose
            // frames are ready when polled reads no clock.
            *this.last_frame = None;
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let timeout = *this.timeout;
        let since = *this.last_frame.get_or_insert_with(Instant::now);
        if this.sleep.is_none() {
            this.sleep
                .set(Some(tokio::time::sleep_until(since + timeout)));
        }
        let Some(mut sleep) = this.sleep.as_pin_mut() else {
            return Poll::Pending;
        };
        loop {
            ready!(sleep.as_mut().poll(cx));
            let deadline = since + timeout;
            if deadline <= Instant::now() {
                return Poll::Ready(Some(Err(IdleTimeoutError(timeout).into())));
            }
            // Frames arrived since the timer was armed: push it back and wait again.
            sleep.as_mut().reset(deadline);
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
pub(crate) mod scripted;
#[cfg(test)]
mod tests;

/// A body pagegate ends on purpose before its end (a spent quota with `on_exceed: cut`): the
/// client sees a broken transfer (HTTP/1: no last chunk; HTTP/2: `RST_STREAM`), never a clean
/// end, and the access log says `truncated`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cut on purpose: {0}")]
pub(crate) struct Truncation(pub(crate) &'static str);

impl Truncation {
    /// Whether `error` is a cut, also as the I/O error a compressing layer wraps it in.
    pub(crate) fn is_cause(error: &(dyn std::error::Error + 'static)) -> bool {
        let mut next = Some(error);
        while let Some(e) = next {
            if e.is::<Self>() {
                return true;
            }
            let inner = e
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref());
            next = inner
                .map(|i| i as &(dyn std::error::Error + 'static))
                .or_else(|| e.source());
        }
        false
    }
}
