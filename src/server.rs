//! The listener: HTTP/1.1 and h2c on one port (plain GETs and HEADs on pagegate's own
//! HTTP/1.1 path, [`http1`]; everything else on hyper-util's `auto`), a connection cap, a drain
//! before shutdown, the optional admin listener (probes, metrics, the operator's verbs), and
//! the current generation that every request is routed in ([`Handle::reload`] swaps it).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::config::defaults::RESERVED_FILES;
use crate::proxy::generation::{BuildError, Generation};
use crate::proxy::router::Current;
use crate::telemetry::{Metrics, Traces};
use crate::{Body, BoxError, Request};

mod admin;
mod client_io;
mod connection;
mod handle;
mod http1;
mod listener;
mod peers;
mod serving;
mod shutdown;
mod watch;

pub use handle::{Handle, Overrides, ReloadError, Source};
pub(crate) use listener::accept;
use serving::Serving;
use shutdown::Drain;
pub(crate) use shutdown::{Signals, signals};
pub(crate) use watch::watch;

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
    /// Tracing could not start.
    #[error(transparent)]
    Traces(#[from] crate::telemetry::TracesError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A bound, not yet running proxy. Binding first lets tests and the demo learn the port.
pub struct Server {
    config: Arc<Config>,
    listener: TcpListener,
    admin_listener: Option<TcpListener>,
    /// Open files left beyond what `max_connections` needs (for the waiting room).
    spare_files: u64,
    metrics: Arc<Metrics>,
    current: Current,
    drain: Arc<Drain>,
    source: Option<Arc<Source>>,
    reloading: Arc<std::sync::Mutex<()>>,
    /// The tracer, when `traces` is set.
    traces: Option<Traces>,
}

impl Server {
    /// Builds the first generation of a validated config and binds its listeners.
    pub async fn bind(config: Config) -> Result<Self, StartError> {
        let spare_files = open_files(config.server.max_connections)?;
        let metrics = Arc::new(Metrics::default());
        let generation = Generation::build(config, None, &metrics)?;
        // Served all the same (a restart during an expiry must not take plain service down
        // with it), but said at once: every handshake with it fails.
        for (name, identity) in crate::proxy::generation::certificates(generation.config()) {
            if let Some(why) = identity.invalid_now() {
                tracing::error!(certificate = %name, file = %identity.cert_file.display(), "the certificate {why}: renew it");
            }
        }
        // Table routes are checked against their catalogs now; a database that does not answer
        // does not stop the start.
        generation
            .check_tables(None)
            .await
            .map_err(|(route, reason)| StartError::Table { route, reason })?;
        generation.show_certificates(&metrics);
        let config = Arc::clone(generation.config());
        let listener = listener::bind(config.server.listen, config.server.send_buffer).await?;
        let admin_listener = match config.server.admin_listen {
            Some(addr) => Some(listener::bind(addr, None).await?),
            None => None,
        };
        metrics.lifecycle.running(&config.hash());
        let traces = config
            .server
            .traces
            .as_ref()
            .map(Traces::start)
            .transpose()?;
        Ok(Self {
            config,
            listener,
            admin_listener,
            spare_files,
            metrics,
            current: Arc::new(ArcSwap::from_pointee(generation)),
            drain: Arc::new(Drain::default()),
            source: None,
            reloading: Arc::default(),
            traces,
        })
    }

    /// Reloads read the config from `source` (SIGHUP, `POST /reload`).
    #[must_use]
    pub fn with_source(mut self, source: Source) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// A handle to reload and drain the running server.
    pub fn handle(&self) -> Handle {
        Handle {
            current: Arc::clone(&self.current),
            metrics: Arc::clone(&self.metrics),
            drain: Arc::clone(&self.drain),
            source: self.source.clone(),
            reloading: Arc::clone(&self.reloading),
        }
    }

    /// The proxy's address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The admin listener's address, when configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` completes or a drain starts ([`Handle::drain`]); then `/ready`
    /// answers 503 while traffic is still served for `drain_delay`, the listener closes, and
    /// open requests get `shutdown_grace` to finish.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let settings = &self.config.server;
        // Shutdown: a signal every connection task watches, and a channel whose last sender
        // (one per connection task) closes when the last connection has ended.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let (alive_tx, mut alive_rx) = tokio::sync::mpsc::channel::<()>(1);
        let handle = self.handle();
        // Served through the drain and the grace (probes see 503, scrapes see the end), and
        // stopped when `run` returns.
        let admin_task = self.admin_listener.map(|listener| {
            let admin = admin::Admin::new(handle.clone(), settings);
            tokio::spawn(admin::serve(listener, admin))
        });
        let admission = listener::Admission {
            peers: peers::Peers::new(
                settings.max_connections_per_client,
                self.metrics.protection("connections_per_client"),
            ),
            slots: Arc::new(Semaphore::new(settings.max_connections)),
            // Newcomers that found every slot taken wait here, each in its own task, so the
            // accept loop goes on accepting (see serving).
            waiting: Arc::new(Semaphore::new(serving::waiting_room(
                settings.max_connections,
                self.spare_files,
            ))),
        };
        let serving = Arc::new(Serving::new(
            settings,
            (&self.metrics, self.traces.clone()),
            &self.current,
            Arc::clone(&admission.slots),
            (stop_rx, alive_tx.clone()),
        ));
        sample_live(&self.metrics, &self.current, &serving.open);
        let (drain, delay) = (Arc::clone(&self.drain), settings.drain_delay);
        let stop_accepting = async move {
            tokio::select! {
                () = shutdown => drain.start("shutdown"),
                () = drain.started() => {}
            }
            tokio::time::sleep(delay).await;
        };
        listener::accept_clients(&self.listener, &serving, &admission, stop_accepting).await;
        drop(serving);
        drop(self.listener);
        drop(handle);
        tracing::info!(grace = ?settings.shutdown_grace, "shutting down");
        let _ = stop_tx.send(true);
        drop(alive_tx);
        tokio::select! {
            // Every connection task holds a sender: `None` once the last one has ended.
            _ = alive_rx.recv() => {}
            () = tokio::time::sleep(settings.shutdown_grace) => {
                tracing::warn!("grace period over; closing open connections");
            }
        }
        if let Some(traces) = self.traces {
            // Sends the spans still buffered; blocking, so off the runtime's threads.
            let _ = tokio::task::spawn_blocking(move || traces.shutdown()).await;
        }
        if let Some(admin) = admin_task {
            admin.abort();
        }
    }
}

/// Sets the gauges of what is open at each scrape: the connections and their requests in
/// flight, and the running generation's held pages and database pools. Held weakly, so a
/// server that ended leaves nothing behind.
fn sample_live(metrics: &Metrics, current: &Current, open: &Arc<connection::Connections>) {
    let (current, open) = (Arc::downgrade(current), Arc::downgrade(open));
    metrics.live.sample_with(move |live| {
        if let Some(open) = open.upgrade() {
            let (connections, streams) = open.counts();
            live.connections(connections, streams);
        }
        let Some(current) = current.upgrade() else {
            return;
        };
        let generation = current.load();
        live.held_bytes(generation.held_budget().held_bytes());
        live.clear_pools();
        for database in generation.databases().values() {
            for (pool, sample) in database.pool_samples() {
                live.pool(database.name(), pool, sample);
            }
        }
    });
}

/// Boxes a request body at the edge and records the client's address. A named function, so the
/// body's error type is exactly [`crate::BoxError`] (a closure leaves its lifetime inferred).
fn incoming(req: http::Request<Incoming>) -> Request {
    req.map(|body| -> Body { body.map_err(|e| client_body_error(&e)).boxed() })
}

/// A client's body error: malformed chunking (hyper reports invalid data from its decoder), or
/// anything else (the client went away, or reset its stream, mid-body). Both are the client's
/// doing: answered 400, never counted against the upstream the body was bound for.
fn client_body_error(error: &hyper::Error) -> BoxError {
    let mut source = std::error::Error::source(error);
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
    tracing::debug!(%error, "the client's request body ended early");
    Box::new(crate::body::RequestBodyError::Aborted)
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
