//! The upstream's response body ([`Leased`]), which gives its HTTP/1.1 connection back to the
//! pool when it has been read to its end: hyper's, or one of pagegate's own HTTP/1.1 path
//! ([`super::wire`]).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;

use super::Inner;
use super::wire::WireBody;
use crate::{Body, BoxError};

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
/// the pool; dropped before, or failed, it drops it, and the connection is closed (one with an
/// answer half read cannot carry another).
///
/// Not a pin projection: both bodies are `Unpin`.
#[derive(Debug)]
pub(crate) struct Leased(Kind);

#[derive(Debug)]
enum Kind {
    /// Read by hyper.
    Hyper {
        body: Incoming,
        lease: Option<Lease>,
    },
    /// Read on pagegate's own path, which pools its connection itself.
    Wire(WireBody),
}

impl Leased {
    pub(super) fn new(body: Incoming, lease: Option<Lease>) -> Self {
        Self(Kind::Hyper { body, lease })
    }

    pub(super) fn wire(body: WireBody) -> Self {
        Self(Kind::Wire(body))
    }

    fn release(&mut self) {
        if let Kind::Hyper { lease, .. } = &mut self.0
            && let Some(lease) = lease.take()
        {
            lease.release();
        }
    }
}

impl http_body::Body for Leased {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let (body, lease) = match &mut self.0 {
            Kind::Wire(body) => return Pin::new(body).poll_frame(cx).map_err(Into::into),
            Kind::Hyper { body, lease } => (body, lease),
        };
        let polled = Pin::new(&mut *body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Err(_))) => *lease = None,
            Poll::Ready(None) => self.release(),
            Poll::Ready(Some(Ok(_))) if body.is_end_stream() => self.release(),
            _ => {}
        }
        polled.map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Hyper { body, .. } => body.is_end_stream(),
            Kind::Wire(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::Hyper { body, .. } => body.size_hint(),
            Kind::Wire(body) => body.size_hint(),
        }
    }
}

impl Drop for Leased {
    fn drop(&mut self) {
        // An empty answer (HEAD, 204, 304) is never polled; one read to its end is released.
        if let Kind::Hyper { body, .. } = &self.0
            && body.is_end_stream()
        {
            self.release();
        }
    }
}
