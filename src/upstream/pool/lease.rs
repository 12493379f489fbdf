//! The upstream's response body ([`Leased`]), which gives its HTTP/1.1 connection back to the
//! pool when it has been read to its end.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;

use super::Inner;
use crate::Body;

/// An HTTP/1.1 connection lent to one exchange.
#[derive(Debug)]
pub(super) struct Lease {
    pool: Arc<Inner>,
    sender: http1::SendRequest<Body>,
}

impl Lease {
    pub(super) fn new(pool: Arc<Inner>, sender: http1::SendRequest<Body>) -> Self {
        Self { pool, sender }
    }

    /// Back to the pool once hyper is ready for the next request on it: at once in the common
    /// case, else when the request body has been sent too (a task waits, as hyper-util's does).
    fn release(self) {
        let Self { pool, mut sender } = self;
        if sender.is_ready() {
            pool.put_http1(sender);
        } else if !sender.is_closed() && tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(async move {
                if sender.ready().await.is_ok() {
                    pool.put_http1(sender);
                }
            });
        }
    }
}

/// The upstream's response body. Read to its end, it returns its connection (if it has one) to
/// the pool; dropped before, or failed, it drops it, and hyper closes it (a connection with an
/// answer half read cannot carry another).
///
/// A plain struct, not a pin projection: [`Incoming`] is `Unpin`.
#[derive(Debug)]
pub(crate) struct Leased {
    body: Incoming,
    lease: Option<Lease>,
}

impl Leased {
    pub(super) fn new(body: Incoming, lease: Option<Lease>) -> Self {
        Self { body, lease }
    }

    fn release(&mut self) {
        if let Some(lease) = self.lease.take() {
            lease.release();
        }
    }
}

impl http_body::Body for Leased {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.release(),
            Poll::Ready(Some(Ok(_))) if self.body.is_end_stream() => self.release(),
            Poll::Ready(Some(Err(_))) => self.lease = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Leased {
    fn drop(&mut self) {
        // An empty answer (HEAD, 204, 304) is never polled; one read to its end is released.
        if self.body.is_end_stream() {
            self.release();
        }
    }
}
