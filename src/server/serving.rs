//! One accepted connection's life: it waits for a `max_connections` slot (the waiting room),
//! then hyper serves it under its protections until it ends; or, with no slot within
//! [`ACCEPT_WAIT`], its request is answered 503 `overloaded` so that no client is closed
//! without an answer.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{FutureExt, future};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tower::ServiceExt;

use super::client_io::{self, Arrivals, ClientIo};
use super::connection::{self, Close, Conn, Connections, Settings};
use super::http1::{self, Graceful};
use super::incoming;
use super::peers::PeerSlot;
use crate::client_addr::{ClientAddr, Closer, TrustedProxies};
use crate::config::ServerConfig;
use crate::config::defaults::{ACCEPT_WAIT, WAITING_ROOM_MIN};
use crate::proxy::rescue::ProxyError;
use crate::proxy::router::{Current, Router};
use crate::telemetry::{AccessLog, AccessLogLayer, Metrics, Traces};
use crate::tls::Transport;
use crate::{Request, Response};

/// After GOAWAY for too many cancelled streams, how long streams in flight may finish (1 s).
const RESET_DRAIN: Duration = Duration::from_secs(1);

/// While a newcomer waits for a slot, how often an evictable connection is looked for (100 ms).
const EVICT_RETRY: Duration = Duration::from_millis(100);

/// The answer of a newcomer that found no slot: 503 `overloaded`. A named service, not a
/// closure, so its request type is exactly [`Request`] (rust-lang/rust#110338).
#[derive(Debug, Clone, Copy)]
pub(super) struct Refusal;

impl tower::Service<Request> for Refusal {
    type Response = Response;
    type Error = Infallible;
    type Future = future::Ready<Result<Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request) -> Self::Future {
        future::ready(Ok(ProxyError::ConnectionsFull.into_response()))
    }
}

mod by_hyper;
mod requests;

use by_hyper::{Builders, to_hyper};
use requests::Handler;

/// What every connection task shares.
pub(super) struct Serving {
    /// The running generation: its listener TLS is what a new connection handshakes with.
    current: Current,
    /// Whether the listener serves TLS (a reload cannot turn it on or off).
    pub(super) tls: bool,
    pub(super) stack: AccessLog<Router>,
    /// The 503 `overloaded` answer, logged as every answer is.
    pub(super) refusal: AccessLog<Refusal>,
    /// hyper's, for what pagegate's own HTTP/1.1 path hands it (and for refusals).
    hyper: Arc<Builders>,
    /// pagegate's own HTTP/1.1 path's settings.
    pub(super) http1: http1::Settings,
    pub(super) open: Arc<Connections>,
    pub(super) slots: Arc<Semaphore>,
    pub(super) closed: client_io::Closed,
    pub(super) trusted: Arc<TrustedProxies>,
    pub(super) header_read_timeout: Duration,
    pub(super) send_timeout: Duration,
    /// Counts newcomers answered 503 (`max_connections`).
    pub(super) overloaded: Counter,
    pub(super) stop: watch::Receiver<bool>,
    /// One sender per connection task: shutdown waits until all have ended.
    pub(super) alive: mpsc::Sender<()>,
}

impl Serving {
    /// What connection tasks share, from the listener's settings. `shutdown` is the signal every
    /// connection watches and the sender each one holds until it ends.
    pub(super) fn new(
        settings: &ServerConfig,
        (metrics, traces): (&Metrics, Option<Traces>),
        current: &Current,
        slots: Arc<Semaphore>,
        shutdown: (watch::Receiver<bool>, mpsc::Sender<()>),
    ) -> Self {
        let closed = client_io::Closed {
            first_bytes: metrics.protection("header_read_timeout"),
            send_stall: metrics.protection("send_stall"),
            http2_control_flood: metrics.protection("http2_control_flood"),
            tls_handshake: metrics.protection("tls_handshake"),
            head_malformed: metrics.protection("head_malformed"),
            head_too_large: metrics.protection("head_too_large"),
            lines: Arc::default(),
        };
        let open = Connections::new(
            Settings {
                http2_idle_timeout: settings.http2_idle_timeout,
                send_timeout: settings.send_timeout,
                http2_max_resets: settings.http2_max_resets.get(),
            },
            connection::Closed {
                evicted_idle: metrics.protection("evicted_idle"),
                evicted_silent: metrics.protection("evicted_silent"),
                evicted_slow_head: metrics.protection("evicted_slow_head"),
                http2_idle: metrics.protection("http2_idle_timeout"),
                http2_resets: metrics.protection("http2_resets"),
                send_stall: closed.send_stall.clone(),
            },
        );
        let log = AccessLogLayer::new(settings.access_log).traced(traces);
        let log = log.counting(metrics.abandoned());
        Self {
            current: Arc::clone(current),
            tls: settings.tls.is_some(),
            stack: crate::proxy::stack::global(Router::new(Arc::clone(current)), log.clone()),
            refusal: crate::proxy::stack::global(Refusal, log),
            hyper: Arc::new(Builders::new(settings)),
            http1: http1::Settings {
                idle: settings.header_read_timeout,
                max_head: usize::try_from(settings.max_head_bytes).unwrap_or(usize::MAX),
            },
            open,
            slots,
            closed,
            trusted: Arc::new(settings.trusted_proxies.clone()),
            header_read_timeout: settings.header_read_timeout,
            send_timeout: settings.send_timeout,
            overloaded: metrics.protection("max_connections"),
            stop: shutdown.0,
            alive: shutdown.1,
        }
    }

    /// Serves a newcomer that found every slot taken: evicts what may be evicted and waits up
    /// to [`ACCEPT_WAIT`] for a slot, else answers 503. Holds `place` (in the waiting room)
    /// until it leaves.
    pub(super) async fn wait(
        self: Arc<Self>,
        stream: TcpStream,
        client: ClientAddr,
        peer_slot: Option<PeerSlot>,
        place: OwnedSemaphorePermit,
    ) {
        let deadline = tokio::time::Instant::now() + ACCEPT_WAIT;
        // One eviction at a time per waiter: it asks again only once its last one has ended
        // (a slot was freed, maybe for an earlier waiter), so a burst evicts no more than it
        // needs.
        let mut evicted = std::sync::Weak::new();
        let permit = loop {
            if evicted.strong_count() == 0 {
                evicted = self.open.evict();
            }
            tokio::select! {
                permit = Arc::clone(&self.slots).acquire_owned() => break permit.ok(),
                () = tokio::time::sleep(EVICT_RETRY) => {}
                () = tokio::time::sleep_until(deadline) => break None,
            }
        };
        match permit {
            Some(permit) => {
                drop(place);
                self.serve(stream, client, permit, peer_slot);
            }
            // The refused connection keeps its place until it closes: waiting and refused
            // newcomers together stay within the waiting room (and the open-files limit).
            None => drop(tokio::spawn(self.refuse(stream, client, place))),
        }
    }

    /// Answers a newcomer's first request 503 `overloaded` with `Retry-After`, then closes.
    /// Combinators, not an async block (see [`Serving::serve`]).
    fn refuse(
        &self,
        stream: TcpStream,
        client: ClientAddr,
        place: OwnedSemaphorePermit,
    ) -> impl Future<Output = ()> + use<> {
        self.overloaded.inc();
        let alive = self.alive.clone();
        let answered = Arc::new(tokio::sync::Notify::new());
        let told = Arc::clone(&answered);
        let refusal = self.refusal.clone();
        let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            told.notify_one();
            let mut req = incoming(req);
            req.extensions_mut().insert(client.clone());
            refusal.clone().oneshot(req)
        });
        let io = self.client_io(stream);
        let connection = Box::pin(
            self.hyper
                .auto
                .serve_connection(TokioIo::new(io), service)
                .into_owned(),
        );
        let first = Box::pin(async move { answered.notified().await });
        let served = future::select(connection, first).then(|either| match either {
            future::Either::Left(_) => future::Either::Left(future::ready(())),
            future::Either::Right(((), mut connection)) => {
                // HTTP/1 answers carry `Connection: close`; HTTP/2 gets GOAWAY after it.
                connection.as_mut().graceful_shutdown();
                future::Either::Right(connection.map(|_| ()))
            }
        });
        let limit = self.header_read_timeout + self.send_timeout;
        tokio::time::timeout(limit, served).map(move |_| drop((alive, place)))
    }

    /// A client socket under its deadlines; with listener TLS, its handshake runs inside the
    /// first reads, within the first-bytes deadline.
    fn client_io(&self, stream: TcpStream) -> ClientIo<Transport<Arrivals<TcpStream>>> {
        let peer = stream.peer_addr().ok().map(|a| a.ip().to_canonical());
        let failed = (self.closed.tls_handshake.clone(), &self.closed.lines, peer);
        let arrived = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stream = Arrivals::new(stream, Arc::clone(&arrived));
        ClientIo::new(
            Transport::new(stream, self.current.load().tls(), failed),
            self.header_read_timeout,
            self.send_timeout,
            self.closed.clone(),
        )
        .noting(arrived)
    }

    /// Serves a connection that holds a slot (`permit`, and its client's `peer_slot`).
    pub(super) fn serve(
        &self,
        stream: TcpStream,
        client: ClientAddr,
        permit: OwnedSemaphorePermit,
        peer_slot: Option<PeerSlot>,
    ) {
        let registered = self.open.open();
        let conn = Arc::clone(&registered.0);
        // The connection's slot, shared with what may outlive its requests (tunnels), with a
        // sender that keeps shutdown waiting (for `shutdown_grace` at most) while a tunnel lives.
        let slot: Arc<dyn std::any::Any + Send + Sync> =
            Arc::new((permit, peer_slot, self.alive.clone()));
        let closing = Box::pin(Arc::clone(&conn).closing());
        let _ = stream.set_nodelay(true);
        let peer = client.ip();
        let handler = Handler {
            requests: Arc::clone(&conn),
            // Rendered once per connection, cloned (reference counts) per request; resolved
            // per request only behind a trusted proxy.
            client: connection_client(client, &conn, &slot),
            trusted: Arc::clone(&self.trusted),
            stack: self.stack.clone(),
        };
        // The protocol sniff waits for first bytes before hyper's timer exists; a client that
        // reads nothing must not pin its response (see client_io).
        let io = self.client_io(stream).watched_by(Arc::clone(&conn));
        let graceful = Arc::new(Graceful::default());
        let to_hyper = {
            let (builders, handler) = (Arc::clone(&self.hyper), handler.clone());
            let graceful = Arc::clone(&graceful);
            move |io, first| to_hyper(&builders, io, first, handler, graceful)
        };
        // Plain GETs and HEADs on pagegate's own path; anything else hands the connection to
        // hyper (see http1).
        let connection = http1::serve(
            io,
            self.http1,
            Arc::clone(&graceful),
            move |req| handler.call(req, false),
            to_hyper,
        );
        let mut stop = self.stop.clone();
        let stopping = Box::pin(async move {
            let _ = stop.changed().await;
        });
        // Why the connection must end early: shutdown (`None`) or one of its own protections.
        let ending = future::select(stopping, closing).map(|either| match either {
            future::Either::Left(((), _)) => None,
            future::Either::Right((close, _)) => Some(close),
        });
        let alive = self.alive.clone();
        // Combinators, not an async block: async blocks over the connection's generic service
        // futures trip rustc's "Send is not general enough" (rust-lang/rust#110338).
        let ended = Arc::clone(&conn);
        let asked = graceful;
        let drain = self.send_timeout;
        let closed = self.closed.clone();
        let served = future::select(Box::pin(connection), ending)
            .then(move |either| match either {
                future::Either::Left((result, _)) => future::Either::Left(future::ready(result)),
                // (An eviction that raced a request's start drains instead, below.)
                future::Either::Right((Some(close), connection))
                    if close == Close::Stalled
                        || close == Close::HeldCut
                        || (close == Close::EvictedAtOnce && !ended.busy()) =>
                {
                    // A stream's client took nothing for send_timeout, or a newcomer needs the
                    // slot of a silent socket or a trickled head: closed at once, releasing
                    // every stream's held page and upstream connection.
                    ended.ending();
                    drop(connection);
                    future::Either::Left(future::ready(Ok(())))
                }
                future::Either::Right((Some(close), connection)) => {
                    // GOAWAY (HTTP/1: no more requests) and a bounded drain, then closed: a
                    // client that answers PINGs but takes nothing cannot keep it open.
                    ended.ending();
                    asked.ask();
                    let limit = if close == Close::Resets {
                        RESET_DRAIN
                    } else {
                        drain
                    };
                    let drained = tokio::time::timeout(limit, connection)
                        .map(|result| result.unwrap_or(Ok(())));
                    future::Either::Right(future::Either::Left(drained))
                }
                future::Either::Right((None, connection)) => {
                    // Shutdown: finish the requests in flight within the grace period.
                    asked.ask();
                    future::Either::Right(future::Either::Right(connection))
                }
            })
            .map(move |result| {
                registered.0.ending();
                closed.ended(result, peer);
                drop((slot, alive, registered));
            });
        tokio::spawn(served);
    }
}

/// How many newcomers may wait for a slot at once: as many as the open-files limit leaves room
/// for beyond what `max_connections` needs, up to `max_connections` or
/// [`WAITING_ROOM_MIN`], whichever is larger, and at least one (taken from the files reserved
/// for the process's own use): with none, the accept loop would wait for a place that never
/// frees and accept nothing again. While the room is full, the accept loop waits, leaving
/// newcomers in the listen backlog.
pub(super) fn waiting_room(max_connections: usize, spare_files: u64) -> usize {
    usize::try_from(spare_files)
        .unwrap_or(usize::MAX)
        .min(max_connections.max(WAITING_ROOM_MIN))
        .max(1)
}

/// The client as every request of a connection sees it: holding the connection's slot (so a
/// tunnel keeps it), and able to cut the connection's held pages.
fn connection_client(
    client: ClientAddr,
    conn: &Arc<Conn>,
    slot: &Arc<dyn std::any::Any + Send + Sync>,
) -> ClientAddr {
    let weak = Arc::downgrade(conn);
    let closer = Closer(Arc::new(move || {
        if let Some(conn) = weak.upgrade() {
            conn.cut_held();
        }
    }));
    client.with_slot(Arc::clone(slot)).with_closer(closer)
}

#[cfg(test)]
#[test]
fn the_waiting_room_has_a_place_whatever_the_files_left() {
    assert_eq!(
        waiting_room(100, 0),
        1,
        "else the accept loop would wait forever"
    );
    assert_eq!(waiting_room(100, 5), 5);
    assert_eq!(waiting_room(10, 1_000_000), WAITING_ROOM_MIN.max(10));
}
