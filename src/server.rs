//! The listener: HTTP/1.1 and h2c on one port (hyper-util `auto`), a connection cap, graceful
//! shutdown on SIGTERM/SIGINT, the optional `/metrics` listener, and the current generation
//! that every request is routed in ([`Handle::reload`] swaps it).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::client_addr::ClientAddr;
use crate::config::Config;
use crate::config::defaults::RESERVED_FILES;
use crate::proxy::generation::{BuildError, Generation};
use crate::proxy::router::{Current, Router};
use crate::telemetry::Metrics;
use crate::{Body, BoxError, Request};

mod client_io;
mod connection;
mod peers;
mod serving;

use connection::Connections;
use serving::Serving;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config does not build (a hand-made config that skipped validation).
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The open-files limit cannot serve `max_connections`.
    #[error(
        "max_connections is {max_connections}, but the open-files limit is {limit}: each client connection may also hold one to its upstream, so pagegate needs {need}; raise the limit (ulimit -n, systemd LimitNOFILE=, docker --ulimit nofile=) or lower max_connections"
    )]
    Files {
        /// The configured cap.
        max_connections: usize,
        /// The hard limit.
        limit: u64,
        /// What the cap needs.
        need: u64,
    },
    /// A table route does not fit its table (checked at start while its database answers).
    #[error("{reason} (route `{route}`)")]
    Table {
        /// The route.
        route: String,
        /// What to change.
        reason: String,
    },
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Why a reload was refused; the running generation stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// Settings that belong to the listener changed: their keys.
    #[error(
        "{} cannot change while pagegate runs: restart it to apply that change",
        keys(.0)
    )]
    Fixed(Vec<&'static str>),
    /// The new config does not build.
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// `a`, `` `a` and `b` ``, `` `a`, `b` and `c` ``.
fn keys(keys: &[&str]) -> String {
    let quoted: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => quoted.concat(),
    }
}

/// A bound, not yet running proxy. Binding first lets tests and the demo learn the port.
pub struct Server {
    config: Arc<Config>,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    /// Open files left beyond what `max_connections` needs (for the waiting room).
    spare_files: u64,
    metrics: Arc<Metrics>,
    current: Current,
}

/// Swaps the generation a running server routes in.
#[derive(Debug, Clone)]
pub struct Handle {
    current: Current,
    metrics: Arc<Metrics>,
}

impl Handle {
    /// Builds `config` beside the running generation, reusing what did not change, and swaps it
    /// in: requests from then on (on open connections too) use it; requests in flight finish
    /// on the stacks they started on.
    pub fn reload(&self, config: Config) -> Result<(), ReloadError> {
        let previous = self.current.load_full();
        let running = previous.config();
        // What the listener fixed at start; a reload that changes it is refused, by name.
        let fixed = running.server.differences(&config.server);
        if !fixed.is_empty() {
            return Err(ReloadError::Fixed(fixed));
        }
        let next = Generation::build(config, Some(&previous), &self.metrics)?;
        self.current.store(Arc::new(next));
        Ok(())
    }

    /// The generation requests are routed in now.
    pub fn generation(&self) -> Arc<Generation> {
        self.current.load_full()
    }
}

impl Server {
    /// Builds the first generation of a validated config and binds its listeners.
    pub async fn bind(config: Config) -> Result<Self, StartError> {
        let spare_files = open_files(config.server.max_connections)?;
        let metrics = Arc::new(Metrics::default());
        let generation = Generation::build(config, None, &metrics)?;
        // Table routes are checked against their catalogs now; a database that does not answer
        // does not stop the start (its routes answer 503 and are checked when it comes back).
        for resource in generation.resources() {
            match resource.check().await {
                Ok(_) => {}
                Err(crate::table::CheckError::Invalid(reason)) => {
                    return Err(StartError::Table {
                        route: resource.route().to_owned(),
                        reason,
                    });
                }
                Err(crate::table::CheckError::Unreachable(error)) => tracing::warn!(
                    route = %resource.route(),
                    %error,
                    "database not reachable; the route answers 503 until it is"
                ),
            }
        }
        let config = Arc::clone(generation.config());
        let bind = |addr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { addr, source })
        };
        let listener = bind(config.server.listen).await?;
        let metrics_listener = match config.server.metrics_listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        Ok(Self {
            config,
            listener,
            metrics_listener,
            spare_files,
            metrics,
            current: Arc::new(ArcSwap::from_pointee(generation)),
        })
    }

    /// A handle to reload the running server.
    pub fn handle(&self) -> Handle {
        Handle {
            current: Arc::clone(&self.current),
            metrics: Arc::clone(&self.metrics),
        }
    }

    /// The proxy's address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The metrics listener's address, when configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` completes, then lets open requests finish within the grace period.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let connections = Arc::new(Semaphore::new(self.config.server.max_connections));
        // Shutdown: a signal every connection task watches, and a channel whose last sender
        // (one per connection task) closes when the last connection has ended.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let (alive_tx, mut alive_rx) = tokio::sync::mpsc::channel::<()>(1);
        let head_bytes = usize::try_from(self.config.server.max_head_bytes).unwrap_or(usize::MAX);
        let trusted = Arc::new(self.config.server.trusted_proxies.clone());
        let peers = peers::Peers::new(
            self.config.server.max_connections_per_client,
            self.metrics.protection("connections_per_client"),
        );
        let closed = client_io::Closed {
            first_bytes: self.metrics.protection("header_read_timeout"),
            send_stall: self.metrics.protection("send_stall"),
            http2_control_flood: self.metrics.protection("http2_control_flood"),
        };
        let open = Connections::new(
            connection::Settings {
                http2_idle_timeout: self.config.server.http2_idle_timeout,
                send_timeout: self.config.server.send_timeout,
                http2_max_resets: self.config.server.http2_max_resets.get(),
            },
            connection::Closed {
                evicted_idle: self.metrics.protection("evicted_idle"),
                evicted_silent: self.metrics.protection("evicted_silent"),
                evicted_slow_head: self.metrics.protection("evicted_slow_head"),
                http2_idle: self.metrics.protection("http2_idle_timeout"),
                http2_resets: self.metrics.protection("http2_resets"),
                send_stall: closed.send_stall.clone(),
            },
        );
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // The head must arrive in time; hyper's timer runs from when a connection waits for a
        // head, so an idle HTTP/1 keep-alive connection is closed after it too.
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.config.server.header_read_timeout)
            // Bounds head memory: max_connections x max_head_bytes. hyper-util's auto builder
            // offers the read buffer's cap, not a head cap of its own: a head that does not fit
            // gets 431 (request bodies are read in chunks of at most this size).
            .max_buf_size(head_bytes);
        // PINGs find HTTP/2 clients that went away without closing.
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(self.config.server.http2_keepalive_interval)
            .keep_alive_timeout(self.config.server.http2_keepalive_timeout)
            .max_header_list_size(u32::try_from(head_bytes).unwrap_or(u32::MAX));
        if let Some(listener) = self.metrics_listener {
            tokio::spawn(serve_metrics(listener, Arc::clone(&self.metrics)));
        }
        let serving = Arc::new(Serving {
            stack: crate::proxy::stack::global(
                Router::new(self.current),
                self.config.server.access_log,
            ),
            refusal: crate::proxy::stack::global(serving::Refusal, self.config.server.access_log),
            builder,
            open,
            slots: Arc::clone(&connections),
            closed,
            trusted,
            header_read_timeout: self.config.server.header_read_timeout,
            send_timeout: self.config.server.send_timeout,
            overloaded: self.metrics.protection("max_connections"),
            stop: stop_rx,
            alive: alive_tx.clone(),
        });
        // Newcomers that found every slot taken wait here, each in its own task, so the accept
        // loop goes on accepting (see serving).
        let waiting = Arc::new(Semaphore::new(serving::waiting_room(
            self.config.server.max_connections,
            self.spare_files,
        )));
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // EMFILE and friends: back off briefly instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let client = ClientAddr::new(peer, &serving.trusted);
            let Ok(peer_slot) = peers.admit(client.key()) else {
                // Over max_connections_per_client: closed at once, before a byte is read.
                drop(stream);
                continue;
            };
            if let Ok(permit) = Arc::clone(&connections).try_acquire_owned() {
                serving.serve(stream, client, permit, peer_slot);
                continue;
            }
            // Every slot is taken: the newcomer waits in the waiting room; when that is full
            // too, so does the accept loop (further clients wait in the listen backlog).
            let place = tokio::select! {
                () = &mut shutdown => break,
                place = Arc::clone(&waiting).acquire_owned() => place,
            };
            let Ok(place) = place else { break };
            tokio::spawn(Arc::clone(&serving).wait(stream, client, peer_slot, place));
        }
        drop(serving);
        drop(self.listener);
        tracing::info!(grace = ?self.config.server.shutdown_grace, "shutting down");
        let _ = stop_tx.send(true);
        drop(alive_tx);
        tokio::select! {
            // Every connection task holds a sender: `None` once the last one has ended.
            _ = alive_rx.recv() => {}
            () = tokio::time::sleep(self.config.server.shutdown_grace) => {
                tracing::warn!("grace period over; closing open connections");
            }
        }
    }
}

/// Boxes a request body at the edge and records the client's address. A named function, so the
/// body's error type is exactly [`crate::BoxError`] (a closure leaves its lifetime inferred).
fn incoming(req: http::Request<Incoming>, client: ClientAddr) -> Request {
    let (mut parts, body) = req.into_parts();
    parts.extensions.insert(client);
    let body: Body = body.map_err(client_body_error).boxed();
    http::Request::from_parts(parts, body)
}

/// A client's body error: malformed chunking (hyper reports invalid data from its decoder) is
/// the client's fault, answered 400; anything else (the client went away) passes as it is.
fn client_body_error(error: hyper::Error) -> BoxError {
    let mut source = std::error::Error::source(&error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput
            )
        {
            return Box::new(crate::body::RequestBodyError::Malformed);
        }
        source = e.source();
    }
    Box::new(error)
}

/// Raises the open-files soft limit to the hard limit, and refuses a `max_connections` the hard
/// limit cannot serve: past it, accepts would fail with EMFILE while clients wait. Returns the
/// files left beyond that need.
fn open_files(max_connections: usize) -> Result<u64, StartError> {
    let need = u64::try_from(max_connections)
        .unwrap_or(u64::MAX)
        .saturating_mul(2)
        .saturating_add(RESERVED_FILES);
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            // No limit to read (not Unix-like): nothing to check against.
            tracing::debug!(%error, "cannot read the open-files limit");
            return Ok(u64::MAX);
        }
    };
    if limit < need {
        return Err(StartError::Files {
            max_connections,
            limit,
            need,
        });
    }
    Ok(limit - need)
}

/// Resolves on SIGTERM or SIGINT.
pub(crate) async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

async fn serve_metrics(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let metrics = Arc::clone(&metrics);
        let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let metrics = Arc::clone(&metrics);
            async move {
                let mut response = if req.uri().path() == "/metrics" {
                    http::Response::new(crate::body::full(metrics.encode()))
                } else {
                    let mut r = http::Response::new(crate::body::full("not found\n"));
                    *r.status_mut() = http::StatusCode::NOT_FOUND;
                    r
                };
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        tokio::spawn(async move {
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
