//! [`QuotaBody`]: an answer's body spending its bytes from the client's quota (and counting
//! them for the rate-limit service's `cost.response`) as frames go out, and with
//! `on_exceed: cut` sending what is left of the quota (the start of the frame that does not
//! fit), then ending with [`Truncation`].

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::Charge;
use crate::BoxError;
use crate::body::Truncation;
use crate::limit::config::QuotaUnit;

pin_project! {
    /// An answer's body charged against a byte quota.
    pub(crate) struct QuotaBody<B> {
        #[pin]
        inner: B,
        charge: Charge,
        cut: Cut,
    }
}

/// Where a cut stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// Not cut.
    No,
    /// Cut: the error is the next thing the body gives.
    Owed,
    /// The error was given.
    Done,
}

/// The cut, given now.
fn self_cut(cut: &mut Cut) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
    *cut = Cut::Done;
    let error = Truncation("the client's byte quota is spent (on_exceed: cut)");
    Poll::Ready(Some(Err(Box::new(error))))
}

impl<B> QuotaBody<B> {
    pub(crate) fn new(inner: B, charge: Charge) -> Self {
        Self {
            inner,
            charge,
            cut: Cut::No,
        }
    }
}

impl<B> Body for QuotaBody<B>
where
    B: Body<Data = Bytes, Error = BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match this.cut {
            Cut::No => {}
            // The start of the frame that did not fit went out: now the cut.
            Cut::Owed => return self_cut(this.cut),
            Cut::Done => return Poll::Ready(None),
        }
        let frame = match ready!(this.inner.poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            other => return Poll::Ready(other),
        };
        let mut data = match frame.into_data() {
            Ok(data) => data,
            // Trailers cost nothing.
            Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
        };
        let allowed = this.charge.spend(QuotaUnit::Bytes, data.len() as u64);
        if allowed < data.len() as u64 {
            data.truncate(usize::try_from(allowed).unwrap_or(0));
            *this.cut = Cut::Owed;
            if data.is_empty() {
                return self_cut(this.cut);
            }
        }
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        match self.cut {
            Cut::No => self.inner.is_end_stream(),
            // The inner body may be at its end with the frame that was cut: the error still
            // has to be given, or hyper ends the answer cleanly (END_STREAM, a last chunk).
            Cut::Owed => false,
            Cut::Done => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        if self.cut == Cut::No {
            self.inner.size_hint()
        } else {
            SizeHint::default()
        }
    }
}
