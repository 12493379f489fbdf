//! The upstream's response body ([`Leased`]), which gives its HTTP/1.1 connection back to the
//! pool when it has been read to its end: hyper's, or one of pagegate's own HTTP/1.1 path
//! ([`super::wire`]).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;

use super::wire::WireBody;
use super::{Http1, Inner};
use crate::BoxError;
use crate::body::BodyEnd;

/// An HTTP/1.1 connection lent to one exchange. Dropped before its answer was read to the
/// end, it closes the connection at once.
#[derive(Debug)]
pub(super) struct Lease {
    /// Where it goes back; `None` for one closed after its answer.
    pool: Option<Arc<Inner>>,
    conn: Option<Http1>,
    /// When the request's body was sent (none: it had none to send).
    body: Option<Arc<BodyEnd>>,
}

impl Lease {
    pub(super) fn new(pool: Arc<Inner>, conn: Http1, body: Option<Arc<BodyEnd>>) -> Self {
        Self {
            pool: Some(pool),
            conn: Some(conn),
            body,
        }
    }

    /// A connection that closes once its answer has been read.
    pub(super) fn closing(conn: Http1) -> Self {
        Self {
            pool: None,
            conn: Some(conn),
            body: None,
        }
    }

    /// The answer was read to its end: the connection goes back to the pool once hyper is
    /// ready for another request on it.
    /// - **Ready** (the common case): at once.
    /// - **The request body sent whole**, hyper still writing its last bytes or settling: a
    ///   task waits, as hyper-util's does, for at most `pool_idle_timeout`, then closes it.
    /// - **The body not sent whole** (the backend answered before it read it): closed at once,
    ///   as nginx keeps no connection whose request body it did not send whole. Sending the
    ///   rest would hold the connection, and the client's upload, for as long as the backend
    ///   does not read, with no deadline once the answer is in; and a backend that took the
    ///   rest for a request of its own would answer it to the next request on the connection.
    fn release(mut self) {
        // One closing after its answer (no pool) is closed when dropped.
        let Some(pool) = self.pool.take() else {
            return;
        };
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let sent = self.body.as_ref().is_none_or(|body| body.ended());
        if conn.sender.is_ready() {
            pool.put_http1(conn);
        } else if sent && tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(async move {
                let ready = tokio::time::timeout(pool.idle_timeout, conn.sender.ready()).await;
                match ready {
                    Ok(Ok(())) => pool.put_http1(conn),
                    _ => conn.task.abort(),
                }
            });
        } else {
            conn.task.abort();
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.task.abort();
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
