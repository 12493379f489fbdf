//! Test harness: real upstream servers on `127.0.0.1:0` that record what they receive, a real
//! pagegate started from YAML, and a plain HTTP client.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use pagegate::Body;
use pagegate::Config;
use pagegate::{Handle, Server};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub mod bodies;
pub mod jwt;
pub mod logs;
pub mod pgwire;
pub mod postgres;
pub mod process;
pub mod raw;
pub mod redis;
pub mod redis_sentinel;
pub mod redis_topologies;
pub mod rls;
pub mod tls;
pub mod types;

/// What an upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: http::Method,
    /// Path and query exactly as received.
    pub target: String,
    pub headers: http::HeaderMap,
}

impl Seen {
    pub fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }
}

/// A real HTTP/1.1 server that records request heads and answers with a handler.
pub struct Upstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    _stop: oneshot::Sender<()>,
}

impl Upstream {
    pub async fn start<F, Fut>(handler: F) -> Self
    where
        F: Fn(http::Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = http::Response<Body>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("upstream addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = oneshot::channel::<()>();
        let handler = Arc::new(handler);
        let record = Arc::clone(&seen);
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = &mut stopped => break,
                    accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
                };
                let handler = Arc::clone(&handler);
                let record = Arc::clone(&record);
                let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    record.lock().expect("lock").push(Seen {
                        method: req.method().clone(),
                        target: req
                            .uri()
                            .path_and_query()
                            .map_or("/", |pq| pq.as_str())
                            .to_owned(),
                        headers: req.headers().clone(),
                    });
                    let response = handler(req);
                    async move { Ok::<_, Infallible>(response.await) }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            seen,
            _stop: stop,
        }
    }

    /// An upstream answering every request with `body` as JSON.
    pub async fn json(body: &'static str) -> Self {
        Self::start(move |_| async move { json_response(body) }).await
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    pub fn last(&self) -> Seen {
        self.seen().pop().expect("the upstream received a request")
    }
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn json_response(body: impl Into<Bytes>) -> http::Response<Body> {
    let mut response = http::Response::new(full(body));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// A running pagegate.
pub struct Proxy {
    pub addr: SocketAddr,
    /// The admin listener, when the YAML sets `admin.listen`.
    pub admin: Option<SocketAddr>,
    /// Reloads the running proxy.
    pub handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    /// Starts pagegate from YAML; `{upstream}` is replaced with `upstream`'s URL and the
    /// proxy listens on an ephemeral port.
    pub async fn start(yaml: &str, upstream: &Upstream) -> Self {
        Self::start_url(yaml, &upstream.url()).await
    }

    pub async fn start_url(yaml: &str, upstream_url: &str) -> Self {
        match Self::try_start_url(yaml, upstream_url).await {
            Ok(proxy) => proxy,
            Err(error) => panic!("bind proxy: {error}"),
        }
    }

    /// Starts pagegate as [`Proxy::start_url`] does, or gives the start's error (the config
    /// must be valid).
    pub async fn try_start_url(yaml: &str, upstream_url: &str) -> Result<Self, String> {
        // No drain delay unless the test asks for one: stopping is then immediate.
        let drain = if yaml.contains("drain_delay") {
            ""
        } else {
            "drain_delay: 0s\n"
        };
        let yaml = format!(
            "listen: 127.0.0.1:0\n{drain}{}",
            yaml.replace("{upstream}", upstream_url)
        );
        let config = match Config::parse("test.yaml", &yaml) {
            Ok(config) => config,
            Err(e) => panic!("test config is invalid:\n{e}\n---\n{yaml}"),
        };
        let server = Server::bind(config).await.map_err(|e| e.to_string())?;
        let addr = server.local_addr().expect("proxy addr");
        let admin = server.admin_addr();
        let handle = server.handle();
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        Ok(Self {
            addr,
            admin,
            handle,
            stop: Some(stop),
            done: Some(done),
        })
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.addr)
    }

    /// The `/metrics` text (the YAML must set `admin.listen`).
    pub async fn metrics_text(&self) -> String {
        let addr = self.admin.expect("an admin listener (admin.listen)");
        get(&format!("http://{addr}/metrics")).await.text()
    }

    /// `pagegate_protections_total` for `reason`. Every reason is exported from the start,
    /// so a missing line (a renamed reason) fails the test rather than reading as 0.
    pub async fn protections(&self, reason: &str) -> u64 {
        let text = self.metrics_text().await;
        let prefix = format!("pagegate_protections_total{{reason=\"{reason}\"}} ");
        let count = text.lines().find_map(|line| line.strip_prefix(&prefix));
        let count = count.unwrap_or_else(|| panic!("no {prefix}line in:\n{text}"));
        count.parse().expect("a count")
    }

    /// Reloads YAML written as for [`Proxy::start_url`], keeping the listen address.
    pub async fn reload(
        &self,
        yaml: &str,
        upstream_url: &str,
    ) -> Result<(), pagegate::ReloadError> {
        let running = self.handle.generation();
        let drain = if yaml.contains("drain_delay") {
            String::new()
        } else {
            format!(
                "drain_delay: {}ms\n",
                running.config().server.drain_delay.as_millis()
            )
        };
        let yaml = format!(
            "listen: {}\n{drain}{}",
            running.config().server.listen,
            yaml.replace("{upstream}", upstream_url)
        );
        let config = Config::parse("test.yaml", &yaml)
            .unwrap_or_else(|e| panic!("test config is invalid:\n{e}\n---\n{yaml}"));
        self.handle.reload(config).await
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            let _ = done.await;
        }
    }
}

/// A response read whole (tests only ever read small ones whole).
#[derive(Debug)]
pub struct Got {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Got {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `Retry-After` in seconds; panics when it is missing or not a number.
    pub fn retry_after(&self) -> u64 {
        let value = self.header("retry-after").expect("Retry-After");
        value
            .parse()
            .unwrap_or_else(|_| panic!("Retry-After {value:?} is not seconds"))
    }

    /// Asserts an RFC 9457 problem with this status and returns its document.
    pub fn problem(&self, status: u16) -> serde_json::Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "status; body: {}",
            self.text()
        );
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json")
        );
        let problem = self.json();
        assert_eq!(problem["status"], status);
        assert!(
            problem["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("urn:pagegate:problem:"))
        );
        assert!(problem["detail"].as_str().is_some_and(|d| !d.is_empty()));
        problem
    }
}

pub fn client() -> Client<HttpConnector, Body> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// A client whose connections come from `ip` (a loopback address such as 127.0.0.6).
pub fn client_from(ip: [u8; 4]) -> Client<HttpConnector, Body> {
    let mut connector = HttpConnector::new();
    connector.set_local_address(Some(std::net::IpAddr::from(ip)));
    Client::builder(TokioExecutor::new()).build(connector)
}

pub async fn send(request: http::Request<Body>) -> Got {
    send_with(&client(), request).await
}

/// Sends `request` with `client` and reads the whole answer.
pub async fn send_with(client: &Client<HttpConnector, Body>, request: http::Request<Body>) -> Got {
    let response = client
        .request(request)
        .await
        .expect("request through pagegate");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("read body").to_bytes();
    Got {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// `GET url`'s head, its body left unread (a client that holds the download).
pub async fn get_head(url: &str) -> http::Response<hyper::body::Incoming> {
    client()
        .request(
            http::Request::get(url)
                .body(full(Bytes::new()))
                .expect("request"),
        )
        .await
        .expect("head")
}

/// Sends newcomers `new-1`, `new-2`, … (`send`, each expected to pass) until `overflow` (a
/// route's `pagegate_limit_overflow_total`, `counted` after `new-0`) stops counting: the pass
/// `new-0` woke at `max_clients` forgot the keys whose state was full, so a newcomer is held
/// on its own again. Fails after twenty.
pub async fn until_newcomers_are_held(
    send: impl AsyncFn(String) -> u16,
    overflow: impl AsyncFn() -> u64,
    mut counted: u64,
) {
    for i in 1..=20 {
        assert_eq!(send(format!("new-{i}")).await, 200);
        let now = overflow().await;
        if now == counted {
            return;
        }
        counted = now;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("newcomers still share the overflow state ({counted} uses)");
}

/// `GET path` on `proxy` with `headers`, read whole.
pub async fn get_with(proxy: &Proxy, path: &str, headers: &[(&str, String)]) -> Got {
    let mut request = http::Request::get(proxy.url(path));
    for (name, value) in headers {
        request = request.header(*name, value.as_str());
    }
    send(request.body(full(Bytes::new())).expect("request")).await
}

/// `HEAD url`.
pub async fn head(url: &str) -> Got {
    send(
        http::Request::head(url)
            .body(full(Bytes::new()))
            .expect("request"),
    )
    .await
}

pub async fn get(url: &str) -> Got {
    send(
        http::Request::get(url)
            .body(full(Bytes::new()))
            .expect("request"),
    )
    .await
}

/// Every line is in the metrics `text`.
pub fn assert_metrics(text: &str, lines: &[&str]) {
    for line in lines {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
}

/// A fresh, empty directory for one test's files, named by `what`, removed with them when
/// dropped: keep it as long as a process reads from it (declared before the process, it is
/// dropped after it).
pub fn scratch_dir(what: &str) -> Scratch {
    Scratch(
        tempfile::Builder::new()
            .prefix(&format!("pagegate-{what}-"))
            .tempdir()
            .expect("scratch dir"),
    )
}

/// A test's scratch directory ([`scratch_dir`]), read as its path.
pub struct Scratch(tempfile::TempDir);

impl std::ops::Deref for Scratch {
    type Target = std::path::Path;

    fn deref(&self) -> &std::path::Path {
        self.0.path()
    }
}

impl AsRef<std::path::Path> for Scratch {
    fn as_ref(&self) -> &std::path::Path {
        self.0.path()
    }
}

/// An HTTP/2 client whose stream and connection windows are the largest there are: flow
/// control never holds its streams back.
pub fn widest_windows() -> h2::client::Builder {
    let mut builder = h2::client::Builder::new();
    let widest = u32::try_from(i32::MAX).expect("window");
    builder
        .initial_window_size(widest)
        .initial_connection_window_size(widest);
    builder
}
