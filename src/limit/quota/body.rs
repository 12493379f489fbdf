//! [`QuotaBody`]: an answer's body spending its bytes from the client's quota as frames go
//! out, and with `on_exceed: cut` ending with [`Truncation`] before the first frame that does
//! not fit.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::Charge;
use crate::BoxError;
use crate::body::Truncation;

pin_project! {
    /// An answer's body charged against a byte quota.
    pub(crate) struct QuotaBody<B> {
        #[pin]
        inner: B,
        charge: Charge,
        cut: bool,
    }
}

impl<B> QuotaBody<B> {
    pub(crate) fn new(inner: B, charge: Charge) -> Self {
        Self {
            inner,
            charge,
            cut: false,
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
        if *this.cut {
            return Poll::Ready(None);
        }
        let frame = ready!(this.inner.poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && let Some(data) = frame.data_ref()
            && !this.charge.spend(data.len() as u64)
        {
            *this.cut = true;
            let cut = Truncation("the client's byte quota is spent (on_exceed: cut)");
            return Poll::Ready(Some(Err(Box::new(cut))));
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.cut || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
