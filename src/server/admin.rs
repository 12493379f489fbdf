//! The admin listener (`admin.listen`), off the data path with its own connection cap and
//! deadlines: `GET /live`, `GET /ready`, `GET /metrics` and `GET /config` for anyone who can
//! reach it; `POST /reload`, `POST /drain` and `PUT /log-level` only for peers in
//! `admin.allow` (loopback by default).

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::Handle;
use super::listener::accept;
use crate::config::ServerConfig;
use crate::problem::Problem;
use crate::{Response, body};

mod ready;
mod slots;
mod view;

/// Longest an admin connection stays open: probes and scrapes are quick.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);
/// Largest body a verb reads (`PUT /log-level` takes a filter such as `info,pagegate=debug`).
const MAX_VERB_BODY: usize = 4096;

/// What the admin listener answers from.
#[derive(Debug)]
pub(super) struct Admin {
    handle: Handle,
    probes: Arc<ready::Probes>,
    slots: Arc<slots::Slots>,
    header_read_timeout: Duration,
}

impl Admin {
    pub(super) fn new(handle: Handle, settings: &ServerConfig) -> Arc<Self> {
        Arc::new(Self {
            handle,
            probes: Arc::default(),
            slots: slots::Slots::new(settings.admin_max_connections),
            header_read_timeout: settings.header_read_timeout,
        })
    }
}

/// Serves the admin listener, and probes the backends for `/ready`, until the task is
/// aborted. Past its peer's share of `admin.max_connections`, a newcomer is closed at once;
/// past all of them, it takes the slot of the connection idle the longest ([`slots`]), or is
/// closed when none has been idle long enough; one that sends nothing within
/// `header_read_timeout` is closed then.
pub(super) async fn serve(listener: TcpListener, admin: Arc<Admin>) {
    let prober = tokio::spawn(ready::probe_forever(
        admin.handle.clone(),
        Arc::clone(&admin.probes),
    ));
    // Aborted with this task: a probe round must not outlive the listener.
    let _prober = AbortOnDrop(prober);
    loop {
        let (stream, peer) = accept(&listener, "admin").await;
        let ip = peer.ip().to_canonical();
        let generation = admin.handle.generation();
        let trusted = generation
            .config()
            .admin
            .allow
            .iter()
            .any(|n| n.contains(&ip));
        let Some(slot) = admin.slots.take(ip, trusted) else {
            drop(stream);
            continue;
        };
        let admin = Arc::clone(&admin);
        // Its requests say when it is busy; a newcomer that finds every slot taken may take
        // this one's once it has been idle a while, and this connection then closes.
        let usage = slot.usage();
        tokio::spawn(async move {
            // A connection must send something within header_read_timeout, or it would
            // hold the slot for the whole CONNECTION_LIFETIME. A peek, not `readable()`:
            // readiness may be reported before any byte has come.
            let mut byte = [0u8; 1];
            let first = tokio::time::timeout(admin.header_read_timeout, stream.peek(&mut byte));
            let first = tokio::select! {
                first = first => first,
                () = usage.evicted() => return,
            };
            if !matches!(first, Ok(Ok(1..))) {
                // The slot first: a peer that saw the close may come back at once.
                drop(slot);
                return;
            }
            let service = {
                let (admin, usage) = (Arc::clone(&admin), Arc::clone(&usage));
                hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let (admin, usage) = (Arc::clone(&admin), Arc::clone(&usage));
                    async move {
                        usage.busy();
                        let answer = answer(&admin, req, peer.ip().to_canonical()).await;
                        usage.idle();
                        Ok::<_, Infallible>(answer)
                    }
                })
            };
            // HTTP/1 only: probes and scrapers speak it, and one HTTP/2 connection could
            // carry a hundred concurrent scrapes.
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(admin.header_read_timeout);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = tokio::time::timeout(CONNECTION_LIFETIME, connection) => {}
                () = usage.evicted() => {}
            }
            drop(slot);
        });
    }
}

/// Aborts its task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The answer to one admin request.
async fn answer(admin: &Admin, req: http::Request<Incoming>, peer: IpAddr) -> Response {
    let path = req.uri().path().to_owned();
    let read = matches!(*req.method(), Method::GET | Method::HEAD);
    match (path.as_str(), req.method()) {
        ("/live", _) if read => json(StatusCode::OK, &serde_json::json!({"status": "live"})),
        ("/ready", _) if read => ready::answer(&admin.handle, &admin.probes).await,
        ("/metrics", _) if read => {
            ready::sample(&admin.handle, &admin.probes);
            metrics(&admin.handle).await
        }
        ("/config", _) if read => view::answer(admin.handle.generation().config()),
        ("/reload", &Method::POST) | ("/drain", &Method::POST) | ("/log-level", &Method::PUT) => {
            let generation = admin.handle.generation();
            if !generation.config().admin.allow.iter().any(|net| net.contains(&peer)) {
                let detail = format!(
                    "{peer} may not {} {path}: only peers in admin.allow may (default: loopback)",
                    req.method()
                );
                return Problem::new(StatusCode::FORBIDDEN, "urn:pagegate:problem:admin-forbidden", detail)
                    .into_response();
            }
            verb(admin, req, &path).await
        }
        ("/live" | "/ready" | "/metrics" | "/config", _) => not_allowed(&path, "GET, HEAD"),
        ("/reload" | "/drain", _) => not_allowed(&path, "POST"),
        ("/log-level", _) => not_allowed(&path, "PUT"),
        _ => Problem::new(
            StatusCode::NOT_FOUND,
            "urn:pagegate:problem:admin-not-found",
            format!("{path} is not an admin endpoint: /live, /ready, /metrics, /config, /reload, /drain, /log-level"),
        )
        .into_response(),
    }
}

/// `POST /reload`, `POST /drain`, `PUT /log-level`, for an allowed peer.
async fn verb(admin: &Admin, req: http::Request<Incoming>, path: &str) -> Response {
    let handle = &admin.handle;
    match path {
        "/reload" => match handle.reload_source().await {
            Ok(hash) => {
                tracing::info!(%hash, "POST /reload: config reloaded");
                json(
                    StatusCode::OK,
                    &serde_json::json!({"status": "reloaded", "hash": hash}),
                )
            }
            Err(error) => {
                tracing::error!(%error, "POST /reload: reload refused; the running config stays");
                Problem::new(
                    StatusCode::CONFLICT,
                    "urn:pagegate:problem:reload-refused",
                    error.to_string(),
                )
                .into_response()
            }
        },
        "/drain" => {
            handle.drain();
            json(
                StatusCode::ACCEPTED,
                &serde_json::json!({"status": "draining"}),
            )
        }
        _ => {
            let limited = http_body_util::Limited::new(req.into_body(), MAX_VERB_BODY);
            let filter = match limited.collect().await {
                Ok(body) => String::from_utf8_lossy(&body.to_bytes()).trim().to_owned(),
                Err(_) => String::new(),
            };
            match crate::telemetry::set_log_filter(&filter) {
                Ok(()) => {
                    tracing::info!(filter, "PUT /log-level: log filter changed");
                    json(StatusCode::OK, &serde_json::json!({"status": "ok", "filter": filter}))
                }
                Err(reason) => Problem::new(
                    StatusCode::BAD_REQUEST,
                    "urn:pagegate:problem:invalid-log-level",
                    format!("{filter:?} is not a log filter ({reason}): send a level such as debug, or directives such as info,pagegate=debug"),
                )
                .into_response(),
            }
        }
    }
}

/// `GET /metrics`: the OpenMetrics text.
async fn metrics(handle: &Handle) -> Response {
    // Off the runtime's workers: a scrape reads /proc and encodes every family under one
    // lock, and scrapes from several peers at once would hold the workers the data path needs.
    let metrics = Arc::clone(&handle.metrics);
    let Ok(text) = tokio::task::spawn_blocking(move || metrics.encode()).await else {
        // A failed scrape, not an empty one: every series vanishing would read as a restart.
        tracing::error!("encoding the metrics failed");
        return Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "urn:pagegate:problem:internal",
            "the metrics could not be encoded; the reason is logged".to_owned(),
        )
        .into_response();
    };
    let mut response = http::Response::new(body::full(text));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}

/// 405 with the methods the path takes.
fn not_allowed(path: &str, allow: &'static str) -> Response {
    let detail = format!("{path} takes {allow}");
    let mut response = Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "urn:pagegate:problem:admin-method-not-allowed",
        detail,
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// A JSON answer, never cached.
fn json(status: StatusCode, value: &serde_json::Value) -> Response {
    let mut response = http::Response::new(body::full(value.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
