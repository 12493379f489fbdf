//! Streaming body transforms: `pin_project_lite` wrappers over [`http_body::Body::poll_frame`].
//!
//! Nothing here collects a body: each wrapper sees one frame at a time and passes it on.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::BoxError;

pub mod scan;

/// A complete body from bytes (pagegate's own answers and held pages).
pub fn full(bytes: impl Into<Bytes>) -> crate::Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A body that did not produce its next frame within the idle timeout.
#[derive(Debug, thiserror::Error)]
#[error("body idle for more than {0:?}")]
pub struct IdleTimeoutError(pub Duration);

pin_project! {
    /// Fails a body that pauses longer than `timeout` between two frames.
    ///
    /// The clock starts when the body is first polled and restarts after every frame, so a slow
    /// but steady stream is never cut; only a stall is. The timer is armed once and pushed back
    /// only when it fires early, so a fast stream costs one clock read per frame, not one timer
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
    pub fn new(inner: B, timeout: Duration) -> Self {
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
            *this.last_frame = Some(Instant::now());
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
mod tests;
