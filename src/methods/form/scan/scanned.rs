//! A form body passed through frame by frame while [`Scan`] reads it ([`Scanned`]): its last
//! frame waits for the verdict, and a refusal sends nothing more.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::Body as HttpBody;
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;

use super::Scan;
use crate::BoxError;

pin_project! {
    /// A form body passed through frame by frame while [`Scan`] reads it; its last frame waits
    /// for the scan's verdict.
    pub(crate) struct Scanned<B> {
        #[pin]
        inner: B,
        scan: Scan,
        // The frame held back until the next one (or the end) arrives.
        held: Option<Frame<Bytes>>,
        // Once the body has ended: what is left to hand out, in order.
        rest: VecDeque<Result<Frame<Bytes>, BoxError>>,
        done: bool,
    }
}

impl<B> Scanned<B> {
    pub(crate) fn new(inner: B, scan: Scan) -> Self {
        Self {
            inner,
            scan,
            held: None,
            rest: VecDeque::new(),
            done: false,
        }
    }
}

impl<B> HttpBody for Scanned<B>
where
    B: HttpBody<Data = Bytes, Error = BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        loop {
            if *this.done {
                return Poll::Ready(this.rest.pop_front());
            }
            let last = match ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        this.scan.feed(data);
                    }
                    if frame.is_data() && !this.inner.is_end_stream() {
                        if let Some(previous) = this.held.replace(frame) {
                            return Poll::Ready(Some(Ok(previous)));
                        }
                        continue;
                    }
                    // The last data frame, or trailers: the body is whole.
                    Some(frame)
                }
                Some(Err(error)) => return Poll::Ready(Some(Err(error))),
                None => None,
            };
            // Judge the whole body: the held frame and the last go out only if nothing is
            // refused, else the error takes their place.
            // On a refusal nothing more goes out, not even the held frame: an empty last frame
            // or trailers must not let the backend complete the body.
            *this.done = true;
            match this.scan.end() {
                Some(error) => {
                    this.held.take();
                    this.rest.push_back(Err(Box::new(error)));
                }
                None => {
                    this.rest.extend(this.held.take().map(Ok));
                    this.rest.extend(last.map(Ok));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.rest.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        let waiting: u64 = self
            .held
            .iter()
            .chain(self.rest.iter().filter_map(|r| r.as_ref().ok()))
            .filter_map(Frame::data_ref)
            .map(|d| d.len() as u64)
            .sum();
        let inner = self.inner.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower().saturating_add(waiting));
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(waiting));
        }
        hint
    }
}
