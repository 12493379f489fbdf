//! One request on a connection ([`Stream`]), from its head until its answer's body ends or is
//! dropped: the answer's body is [`Tracked`] (bytes sent, its end) and its future [`Answer`]
//! (whether the answer ended, which decides if a cancel counts as a reset).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Body as HttpBody;
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::server::connection::{Conn, H2_FRAME};
use crate::sync::lock;

/// One request on a connection, from its head until its answer's body ends or is dropped.
#[derive(Debug)]
pub(crate) struct Stream {
    pub(super) conn: Arc<Conn>,
    /// HTTP/2 only: the registry key and clock of this stream.
    pub(super) clock: Option<(u64, Arc<super::socket::Waiting>)>,
    /// The answer's head was produced.
    pub(super) answered: bool,
    /// hyper asked for the answer's body at least once.
    pub(super) polled: bool,
    /// The answer ended (or failed on pagegate's side): not a client's cancel.
    pub(super) ended: bool,
}

impl Drop for Stream {
    fn drop(&mut self) {
        if let Some((key, _)) = &self.clock {
            lock(&self.conn.streams).remove(key);
        }
        if self.conn.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            let now = self.conn.connections.now_ms();
            self.conn.idle_since.store(now, Ordering::Relaxed);
        }
        // A cancel is a dropped answer that had not ended: before its head, or mid-body. A body
        // hyper never asked for (HEAD, an empty answer) is not one.
        let cancelled = !self.ended && (!self.answered || self.polled);
        if cancelled && self.clock.is_some() {
            self.conn.cancelled();
        }
    }
}

impl Stream {
    /// The answer failed on pagegate's side: hyper resets the stream, the client did not.
    pub(crate) fn failed(mut self) {
        self.ended = true;
    }

    /// The answer's head is ready: the guard now lives in its body.
    pub(crate) fn body<B>(mut self, inner: B) -> Tracked<B>
    where
        B: HttpBody<Data = Bytes>,
    {
        self.answered = true;
        let stream = if inner.is_end_stream() {
            // hyper may never poll an empty body: the request is over now.
            self.ended = true;
            None
        } else {
            // HTTP/2: hyper asks for the first frame once the client has granted the stream
            // window; one that grants none stalls from here.
            self.waiting(true);
            Some(self)
        };
        Tracked {
            inner,
            stream,
            rest: None,
        }
    }

    /// Its frame waits for the client from now (`true`), or was taken.
    fn waiting(&self, waits: bool) {
        if let Some((_, clock)) = &self.clock {
            if waits {
                self.conn.wait(clock);
            } else {
                clock.stop();
            }
        }
    }
}

pin_project! {
    /// An answer's body carrying its request's [`Stream`] guard until it ends.
    pub(crate) struct Tracked<B> {
        #[pin]
        inner: B,
        stream: Option<Stream>,
        // HTTP/2: what is left of a frame cut to [`H2_FRAME`].
        rest: Option<Bytes>,
    }
}

impl<B> Tracked<B> {
    /// Hands out at most [`H2_FRAME`] bytes of `data` on HTTP/2 streams, keeping the rest.
    fn cut(stream: &Stream, rest: &mut Option<Bytes>, mut data: Bytes) -> Bytes {
        if stream.clock.is_some() && data.len() > H2_FRAME {
            *rest = Some(data.split_off(H2_FRAME));
        }
        stream.waiting(true);
        data
    }
}

impl<B> HttpBody for Tracked<B>
where
    B: HttpBody<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        let Some(stream) = this.stream.as_mut() else {
            return this.inner.poll_frame(cx);
        };
        stream.polled = true;
        // hyper asks again: the client made room for more.
        stream.waiting(false);
        if let Some(rest) = this.rest.take() {
            let data = Self::cut(stream, this.rest, rest);
            // The last piece of a cut frame may be the answer's last.
            stream.ended |= this.rest.is_none() && this.inner.is_end_stream();
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        let mut inner = this.inner;
        let polled = inner.as_mut().poll_frame(cx);
        match polled {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => {
                    let data = Self::cut(stream, this.rest, data);
                    if this.rest.is_none() && inner.is_end_stream() {
                        // hyper drops a body after its last frame without asking again (HTTP/2
                        // sends that frame with END_STREAM): the answer has ended, and a drop
                        // now is no client's reset.
                        stream.ended = true;
                    }
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Err(trailers) => {
                    stream.ended = true;
                    Poll::Ready(Some(Ok(trailers)))
                }
            },
            Poll::Ready(None | Some(Err(_))) => {
                stream.ended = true;
                *this.stream = None;
                polled
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let hint = self.inner.size_hint();
        let Some(rest) = &self.rest else {
            return hint;
        };
        let rest = rest.len() as u64;
        let mut with = SizeHint::new();
        with.set_lower(hint.lower().saturating_add(rest));
        if let Some(upper) = hint.upper() {
            with.set_upper(upper.saturating_add(rest));
        }
        with
    }
}

pin_project! {
    /// A request's answer on its way to hyper: on success the [`Stream`] guard moves into the
    /// body; dropped before (the client cancelled), the guard counts a cancel.
    pub(crate) struct Answer<F> {
        #[pin]
        inner: F,
        stream: Option<Stream>,
    }
}

impl<F> Answer<F> {
    pub(crate) fn new(inner: F, stream: Stream) -> Self {
        Self {
            inner,
            stream: Some(stream),
        }
    }
}

impl<F, B, E> Future for Answer<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
    B: HttpBody<Data = Bytes>,
{
    type Output = Result<http::Response<Tracked<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let answer = std::task::ready!(this.inner.poll(cx));
        let stream = this.stream.take().expect("polled after completion");
        Poll::Ready(match answer {
            Ok(response) => Ok(response.map(|body| stream.body(body))),
            Err(error) => {
                stream.failed();
                Err(error)
            }
        })
    }
}
