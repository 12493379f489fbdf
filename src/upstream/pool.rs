//! One upstream's keep-alive connections ([`Pool`]): HTTP/1.1 connections lent to one request
//! at a time, or one shared HTTP/2 connection (`http2: true`).
//!
//! Over HTTP/1.1, a `GET` or `HEAD` with no body (the hop's common case) goes on a connection of
//! pagegate's own HTTP/1.1 path ([`wire`], which says how it reads answers and when it retries);
//! any other request goes through hyper's client connection. The two kinds cannot carry each
//! other's requests, so each pools up to `pool_max_idle` of its own.
//!
//! Written on hyper's connection API rather than hyper-util's pooled client because that
//! client is generic over many hosts and pays for it on every request: it hashes a
//! (scheme, authority) key with SipHash three times, races a checkout against a lazily built
//! connect future, and spawns a task per HTTP/1 request to wait for the connection to come
//! back (`bench/instructions.sh` counted about 9,000 instructions a request in it). A pool
//! here serves one backend, known when the route is built, so it is a locked stack:
//! - **Checkout** pops the most recently used connection that is ready and idle for less than
//!   `pool_idle_timeout`; others are dropped (hyper then closes them).
//! - **Return** happens when the response body has been read to its end ([`Leased`]); one
//!   dropped half read is closed. So is a connection still sending its request body then (the
//!   backend answered early), at once, as nginx does: the rest would wait on a backend that
//!   may never read it, and one that took it for a request would answer it to the next.
//! - **An answer framed twice** (`Content-Length` beside `Transfer-Encoding`) closes its
//!   connection once read; one with a transfer coding other than chunked is refused, on
//!   hyper's connections as on pagegate's own.
//! - **HTTP/2** shares one connection, opened by one request of a burst; with
//!   `pool_max_idle: 0` every request opens its own, as with hyper-util.
//! - **A reused hyper connection the backend closed** just as a request was handed to it gives
//!   the request back untouched (hyper's `TrySendError::take_message`): it is sent again on a
//!   new connection, never on a connection that saw any of it.
//! - **A reaper** task ([`reaper`]), running only while connections are pooled, closes those idle longer
//!   than `pool_idle_timeout` (checked every `pool_idle_timeout`), so a quiet backend is not
//!   held open.

mod lease;
mod reaper;
mod wire;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::HeaderValue;
use hyper::client::conn::{http1, http2};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tower::ServiceExt as _;

pub(crate) use lease::Leased;

use crate::body::BodyEnd;
use crate::sync::lock;
use crate::upstream::config::UpstreamConfig;
use crate::{Body, BoxError, Request};

/// The upstream's answer, its body returning the connection when it ends.
pub(crate) type Answer = http::Response<Leased>;

/// The future of one exchange. Boxed: it awaits a connect, a handshake and a retry in turn.
pub(crate) type ResponseFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Answer, SendError>> + Send>>;

/// Why an exchange failed before its response head.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// No connection: refused, unresolvable, timed out, or TLS failed.
    #[error("could not connect")]
    Connect(#[source] BoxError),
    /// The connection failed or closed during the handshake or the exchange, or the request's
    /// own body failed (its error is in the chain).
    #[error("the exchange failed")]
    Exchange(#[source] BoxError),
}

impl SendError {
    /// Whether no connection could be made.
    pub(crate) fn is_connect(&self) -> bool {
        matches!(self, Self::Connect(_))
    }

    /// Whether the backend's answer could not be read exactly (pagegate's own HTTP/1.1 path).
    pub(crate) fn is_malformed(&self) -> bool {
        matches!(self, Self::Exchange(error) if matches!(
            error.downcast_ref::<wire::WireError>(),
            Some(wire::WireError::Malformed(_))
        ))
    }
}

/// One upstream's connections.
#[derive(Debug)]
pub(crate) struct Pool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    connector: HttpsConnector<HttpConnector>,
    /// `scheme://authority/`, what the connector dials.
    origin: http::Uri,
    http2: bool,
    /// The `Host` an HTTP/1.1 request without one gets (an HTTP/1.0 client's, `host: preserve`).
    authority: Option<HeaderValue>,
    max_idle: usize,
    idle_timeout: Duration,
    idle: Mutex<Idle>,
    /// Held while an HTTP/2 connection is being opened, so that a burst of first requests
    /// opens one, not one each.
    connecting: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct Idle {
    /// Ready HTTP/1.1 connections, the most recently returned last.
    http1: Vec<(Http1, Instant)>,
    /// Idle connections of pagegate's own HTTP/1.1 path ([`wire`]), the most recently
    /// returned last.
    wire: Vec<(wire::Conn, Instant)>,
    /// The shared HTTP/2 connection and when it was last used.
    http2: Option<(http2::SendRequest<Body>, Instant)>,
    /// A reaper task is running.
    reaping: bool,
}

type Io = MaybeHttpsStream<TokioIo<TcpStream>>;

/// One of hyper's HTTP/1.1 connections: the handle requests are sent on, and its task, aborted
/// to close the connection at once (dropping the handle lets the task finish sending a request
/// body first).
#[derive(Debug)]
pub(super) struct Http1 {
    sender: http1::SendRequest<Body>,
    task: tokio::task::AbortHandle,
}

impl Pool {
    /// An empty pool for `config`'s backend, dialling through `connector`.
    pub(crate) fn new(
        connector: HttpsConnector<HttpConnector>,
        config: &UpstreamConfig,
        authority: Option<HeaderValue>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                connector,
                origin: config.origin.clone(),
                http2: config.http2,
                authority,
                max_idle: config.pool_max_idle,
                idle_timeout: config.pool_idle_timeout,
                idle: Mutex::default(),
                connecting: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Sends `req` (origin-form URI for HTTP/1.1, absolute for HTTP/2) on a pooled or new
    /// connection; `body` tells when its body has been sent, when it has one to send.
    pub(crate) fn request(&self, req: Request, body: Option<Arc<BodyEnd>>) -> ResponseFuture {
        let inner = Arc::clone(&self.inner);
        if inner.http2 {
            Box::pin(inner.send_http2(req))
        } else {
            Box::pin(inner.send_http1(req, body))
        }
    }
}

impl Inner {
    async fn send_http1(
        self: Arc<Self>,
        mut req: Request,
        body: Option<Arc<BodyEnd>>,
    ) -> Result<Answer, SendError> {
        if let Some(authority) = &self.authority {
            req.headers_mut()
                .entry(http::header::HOST)
                .or_insert_with(|| authority.clone());
        }
        // The hop's common case, a GET or HEAD with no body, on pagegate's own path.
        if wire::fits(&req) {
            return wire::send(self, req).await;
        }
        let head_only = req.method() == http::Method::HEAD;
        loop {
            let (mut conn, reused) = match self.checkout_http1() {
                Some(conn) => (conn, true),
                None => (self.connect_http1().await?, false),
            };
            match conn.sender.try_send_request(req).await {
                Ok(answer) => {
                    let (framed_twice, upgraded) =
                        judge(&answer, head_only).inspect_err(|_| conn.task.abort())?;
                    // An upgraded connection is the tunnel's, never pooled again; one framed
                    // twice is closed after its answer (RFC 9112 §6.3), as on pagegate's path.
                    let lease = match (upgraded, framed_twice) {
                        (false, false) => Some(lease::Lease::new(Arc::clone(&self), conn, body)),
                        (false, true) => Some(lease::Lease::closing(conn)),
                        (true, _) => None,
                    };
                    return Ok(answer.map(|body| Leased::new(body, lease)));
                }
                Err(mut error) => match error.take_message() {
                    // Closed by the backend as it was handed over: nothing of it was sent.
                    Some(back) if reused => req = back,
                    _ => return Err(SendError::Exchange(error.into_error().into())),
                },
            }
        }
    }

    async fn send_http2(self: Arc<Self>, mut req: Request) -> Result<Answer, SendError> {
        loop {
            let (mut sender, reused) = match self.checkout_http2() {
                Some(sender) => (sender, true),
                None => self.connect_http2().await?,
            };
            match sender.try_send_request(req).await {
                Ok(answer) => return Ok(answer.map(|body| Leased::new(body, None))),
                Err(mut error) => match error.take_message() {
                    Some(back) if reused => req = back,
                    _ => return Err(SendError::Exchange(error.into_error().into())),
                },
            }
        }
    }

    /// The most recently returned idle connection of pagegate's own path that has nothing to
    /// read and has been idle for less than the timeout.
    fn checkout_wire(&self) -> Option<wire::Conn> {
        loop {
            // Looked at outside the lock: a TLS connection's look may decrypt a record.
            let (mut conn, since) = lock(&self.idle).wire.pop()?;
            if since.elapsed() < self.idle_timeout && conn.is_quiet() {
                return Some(conn);
            }
        }
    }

    /// The most recently returned ready connection idle for less than the timeout.
    fn checkout_http1(&self) -> Option<Http1> {
        let mut idle = lock(&self.idle);
        while let Some((conn, since)) = idle.http1.pop() {
            if conn.sender.is_ready() && since.elapsed() < self.idle_timeout {
                return Some(conn);
            }
        }
        None
    }

    /// The shared HTTP/2 connection, while it is open and has been used within the idle
    /// timeout.
    fn checkout_http2(&self) -> Option<http2::SendRequest<Body>> {
        let mut idle = lock(&self.idle);
        match &mut idle.http2 {
            Some((sender, used)) if !sender.is_closed() && used.elapsed() < self.idle_timeout => {
                *used = Instant::now();
                Some(sender.clone())
            }
            _ => {
                idle.http2 = None;
                None
            }
        }
    }

    pub(super) async fn connect(&self) -> Result<Io, SendError> {
        self.connector
            .clone()
            .oneshot(self.origin.clone())
            .await
            .map_err(SendError::Connect)
    }

    async fn connect_http1(&self) -> Result<Http1, SendError> {
        let io = self.connect().await?;
        let (sender, connection) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| SendError::Exchange(e.into()))?;
        let task = tokio::spawn(async move {
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(%error, "upstream connection ended");
            }
        });
        Ok(Http1 {
            sender,
            task: task.abort_handle(),
        })
    }

    /// The shared HTTP/2 connection, opened unless another request has just opened it (then
    /// `true`: reused).
    async fn connect_http2(
        self: &Arc<Self>,
    ) -> Result<(http2::SendRequest<Body>, bool), SendError> {
        // Nothing to share with `pool_max_idle: 0`: each opens its own at once.
        let _one_at_a_time = match self.max_idle {
            0 => None,
            _ => Some(self.connecting.lock().await),
        };
        if let Some(sender) = self.checkout_http2() {
            return Ok((sender, true));
        }
        let io = self.connect().await?;
        let (mut sender, connection) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(io)
            .await
            .map_err(|e| SendError::Exchange(e.into()))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "upstream connection ended");
            }
        });
        sender
            .ready()
            .await
            .map_err(|e| SendError::Exchange(e.into()))?;
        if self.max_idle > 0 {
            let mut idle = lock(&self.idle);
            idle.http2 = Some((sender.clone(), Instant::now()));
            self.reap_later(&mut idle);
        }
        Ok((sender, false))
    }

    /// Pools a ready HTTP/1.1 connection, unless the pool is full.
    fn put_http1(self: &Arc<Self>, conn: Http1) {
        let mut idle = lock(&self.idle);
        if idle.http1.len() < self.max_idle {
            idle.http1.push((conn, Instant::now()));
            self.reap_later(&mut idle);
        }
    }

    /// Pools an idle connection of pagegate's own path, unless the pool is full.
    fn put_wire(self: &Arc<Self>, conn: wire::Conn) {
        let mut idle = lock(&self.idle);
        if idle.wire.len() < self.max_idle {
            idle.wire.push((conn, Instant::now()));
            self.reap_later(&mut idle);
        }
    }
}

/// What hyper's answer says of its connection: whether it was framed twice (a length beside
/// `Transfer-Encoding`), and whether it was upgraded. A transfer coding other than chunked is
/// refused, as on pagegate's own path: hyper undoes chunked only, and the rest would reach the
/// client undone, with nothing to say so (`Transfer-Encoding` is the hop's). An answer with no
/// body (to a HEAD, a 204 or a 304) is framed by nothing it says, as on pagegate's path.
fn judge(
    answer: &http::Response<hyper::body::Incoming>,
    head_only: bool,
) -> Result<(bool, bool), SendError> {
    use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
    let headers = answer.headers();
    let bodiless = crate::http1::bodiless(answer.status(), head_only);
    let coded = !bodiless && headers.contains_key(TRANSFER_ENCODING);
    if coded && !wire::only_chunked(headers) {
        let malformed = wire::WireError::Malformed("a transfer coding other than chunked");
        return Err(SendError::Exchange(malformed.into()));
    }
    let upgraded = answer.status() == http::StatusCode::SWITCHING_PROTOCOLS;
    Ok((coded && headers.contains_key(CONTENT_LENGTH), upgraded))
}
