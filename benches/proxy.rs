//! Proxy benchmarks: a real `pagegate` process between a hyper upstream and a hyper client,
//! measured against the direct path in the same run. Run with `bench/run.sh` (release build).
//!
//! 1. Pass-through: download a large body directly and through pagegate, alternating; report
//!    throughput ratio (proxied / direct) and pagegate's peak RSS, for two body sizes so a
//!    growing RSS would show.
//! 2. Guarded list route: the same JSON page through a list route (held, scanned, cut) and
//!    through a pass-through route; report the throughput ratio.
//! 3. Cutting a huge list: a backend that ignores `limit` and streams 2 GiB of JSON; report
//!    the time to the cut response and pagegate's peak RSS.
//!
//! Sizes can be lowered for a quick look: `PAGEGATE_BENCH_MIB=256`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use pagegate::Body;
use tokio::net::TcpListener;

const MIB: u64 = 1024 * 1024;

/// `head`, then `total` bytes from one repeated block, then `tail`, produced as polled.
fn repeated(block: Bytes, total: u64, head: Option<Bytes>, tail: Option<Bytes>) -> Body {
    let frames = futures_util::stream::unfold((head, total, tail), move |(head, left, tail)| {
        let block = block.clone();
        async move {
            let frame = |b: Bytes| -> Result<http_body::Frame<Bytes>, pagegate::BoxError> {
                Ok(http_body::Frame::data(b))
            };
            if let Some(head) = head {
                return Some((frame(head), (None, left, tail)));
            }
            if left == 0 {
                return Some((frame(tail?), (None, 0, None)));
            }
            let n = left.min(block.len() as u64) as usize;
            Some((frame(block.slice(..n)), (None, left - n as u64, tail)))
        }
    });
    StreamBody::new(frames).boxed()
}

fn item_block(items: usize) -> Bytes {
    let mut out = String::new();
    for i in 0..items {
        out.push_str(&format!(
            "{{\"id\":{i},\"status\":\"active\",\"created_at\":\"2026-01-01T00:00:03Z\",\"user_id\":7919,\"message\":\"event number {i} 8f14e45fceea167a5a36dedd4bea2543\"}},"
        ));
    }
    Bytes::from(out)
}

/// `/bytes/N`: N raw bytes. `/page`: one JSON array page of `page_items`. `/endless`: a JSON
/// array of `endless_mib` MiB that never honours `limit`.
async fn upstream(page: Bytes, endless_mib: u64) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let raw: Bytes = (0..64 * 1024)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    let items = item_block(400);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (raw, page, items) = (raw.clone(), page.clone(), items.clone());
            let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                let path = req.uri().path().to_owned();
                let (raw, page, items) = (raw.clone(), page.clone(), items.clone());
                async move {
                    let body = if let Some(n) = path.strip_prefix("/bytes/") {
                        repeated(raw, n.parse().unwrap_or(0), None, None)
                    } else if path.starts_with("/page") {
                        http_body_util::Full::new(page)
                            .map_err(|never| match never {})
                            .boxed()
                    } else {
                        // `[` + items… + a final item + `]`, about endless_mib MiB in all.
                        let (open, close) = (
                            Bytes::from_static(b"["),
                            Bytes::from_static(b"{\"id\":-1}]"),
                        );
                        repeated(items, endless_mib * MIB, Some(open), Some(close))
                    };
                    Ok::<_, Infallible>(http::Response::new(body))
                }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

struct Pagegate {
    child: Child,
    addr: SocketAddr,
}

impl Pagegate {
    fn start(upstream: SocketAddr) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let yaml = format!(
            "listen: {addr}\nupstreams: {{app: {{url: 'http://{upstream}', response_timeout: 60s}}}}\n\
             default: {{action: pass, upstream: app}}\n\
             routes:\n  - {{name: page, path: /page, methods: [GET], upstream: app, list: {{max_limit: 100000, default_limit: 100000, max_bytes: 64MiB}}}}\n  - {{name: endless, path: /endless, methods: [GET], upstream: app, list: {{default_limit: 1000, max_bytes: 8MiB}}}}\n"
        );
        let path = std::env::temp_dir().join(format!("pagegate-bench-{port}.yaml"));
        std::fs::write(&path, yaml).expect("write config");
        let child = Command::new(env!("CARGO_BIN_EXE_pagegate"))
            .args(["run", "--config"])
            .arg(&path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start pagegate");
        for _ in 0..200 {
            if std::net::TcpStream::connect(addr).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, addr }
    }

    /// Peak resident set size (VmHWM) in MiB.
    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    }
}

impl Drop for Pagegate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx with `proxy_buffering off`, the peer proxy, when `nginx` is installed.
struct Nginx {
    child: Child,
    addr: SocketAddr,
    _dir: std::path::PathBuf,
}

impl Nginx {
    fn start(upstream: SocketAddr) -> Option<Self> {
        let binary = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .ok()?
            .port();
        let dir = std::env::temp_dir().join(format!("pagegate-bench-nginx-{port}"));
        std::fs::create_dir_all(dir.join("logs")).ok()?;
        let conf = format!(
            "worker_processes 2; daemon off; error_log {dir}/logs/error.log; pid {dir}/nginx.pid;\n\
             events {{ worker_connections 1024; }}\n\
             http {{ access_log off; upstream app {{ server {upstream}; keepalive 32; }}\n\
               client_body_temp_path {dir}; proxy_temp_path {dir};\n\
               server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://app;\n\
                 proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_buffering off; proxy_buffer_size 256k; proxy_buffers 4 256k; proxy_busy_buffers_size 256k; }} }} }}\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("nginx.conf"), conf).ok()?;
        let child = Command::new(binary)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().ok()?;
        for _ in 0..200 {
            if std::net::TcpStream::connect(addr).is_ok() {
                return Some(Self {
                    child,
                    addr,
                    _dir: dir,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-QUIT")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// Downloads a URL, counting bytes; returns (bytes, seconds).
async fn download(client: &Client<HttpConnector, Body>, url: &str) -> (u64, f64) {
    let start = Instant::now();
    let request = http::Request::get(url)
        .body(
            http_body_util::Empty::new()
                .map_err(|never| match never {})
                .boxed(),
        )
        .expect("request");
    let response = client.request(request).await.expect("response");
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    let mut body = response.into_body();
    let mut bytes = 0u64;
    while let Some(frame) = body.frame().await {
        bytes += frame
            .expect("frame")
            .into_data()
            .map_or(0, |d| d.len() as u64);
    }
    (bytes, start.elapsed().as_secs_f64())
}

/// MiB/s over 40 downloads of a `len`-byte body, 4 at a time.
async fn concurrent(client: &Client<HttpConnector, Body>, url: &str, len: f64) -> f64 {
    let start = Instant::now();
    let workers = (0..4).map(|_| async {
        for _ in 0..10 {
            let (n, _) = download(client, url).await;
            assert_eq!(n as f64, len, "{url}: the page is relayed whole");
        }
    });
    futures_util::future::join_all(workers).await;
    40.0 * len / MIB as f64 / start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Pass-through of `mib` MiB: direct, through pagegate and through nginx (when installed).
async fn pass_through(
    client: &Client<HttpConnector, Body>,
    upstream: SocketAddr,
    nginx: Option<&Nginx>,
    mib: u64,
) {
    let pagegate = Pagegate::start(upstream);
    let path = format!("/bytes/{}", mib * MIB);
    let (mut direct, mut proxied, mut peer) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..5 {
        let run = async |addr: SocketAddr, into: &mut Vec<f64>| {
            let (n, s) = download(client, &format!("http://{addr}{path}")).await;
            assert_eq!(n, mib * MIB);
            into.push(n as f64 / MIB as f64 / s);
        };
        run(upstream, &mut direct).await;
        run(pagegate.addr, &mut proxied).await;
        if let Some(nginx) = nginx {
            run(nginx.addr, &mut peer).await;
        }
    }
    let (d, p) = (median(direct), median(proxied));
    let peer = if peer.is_empty() {
        String::new()
    } else {
        let n = median(peer);
        format!(
            ", nginx {n:>6.0} MiB/s (ratio {:.2}), pagegate/nginx {:.2}",
            n / d,
            p / n
        )
    };
    println!(
        "pass-through {mib:>5} MiB: direct {d:>6.0} MiB/s, pagegate {p:>6.0} MiB/s (ratio {:.2}){peer}; pagegate peak RSS {:.1} MiB",
        p / d,
        pagegate.peak_rss_mib()
    );
}

/// A 20,000-item list page, 4 in flight, passed through and guarded.
async fn list_page(client: &Client<HttpConnector, Body>, upstream: SocketAddr, page_len: f64) {
    let pagegate = Pagegate::start(upstream);
    // Throughput with 4 requests in flight: a held page cannot overlap its own receive and
    // send, but a loaded route overlaps different requests, as a real one does.
    let (mut passed, mut guarded) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        // `/page/raw` matches no list route: plain pass-through of the same bytes.
        passed.push(
            concurrent(
                client,
                &format!("http://{}/page/raw", pagegate.addr),
                page_len,
            )
            .await,
        );
        guarded.push(concurrent(client, &format!("http://{}/page", pagegate.addr), page_len).await);
    }
    let (p, g) = (median(passed), median(guarded));
    println!(
        "list page {:.1} MiB (20,000 items), 4 in flight: pass-through {p:.0} MiB/s, guarded list route {g:.0} MiB/s, ratio {:.2}",
        page_len / MIB as f64,
        g / p
    );
}

#[tokio::main]
async fn main() {
    let big_mib: u64 = std::env::var("PAGEGATE_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let page = {
        let mut p = b"[".to_vec();
        let block = item_block(20_000);
        p.extend_from_slice(&block[..block.len() - 1]);
        p.push(b']');
        Bytes::from(p)
    };
    let page_len = page.len() as f64;
    let upstream = upstream(page, 2048).await;
    let client: Client<HttpConnector, Body> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());

    println!("# pagegate proxy benchmarks (release, loopback, same run)");
    let nginx = Nginx::start(upstream);
    if nginx.is_none() {
        println!(
            "(nginx not installed: no peer-proxy column; `apt-get install nginx-light` adds it)"
        );
    }
    for mib in [big_mib / 4, big_mib] {
        pass_through(&client, upstream, nginx.as_ref(), mib).await;
    }

    if std::env::var("PAGEGATE_BENCH_ONLY").is_ok_and(|v| v == "pass") {
        return;
    }
    list_page(&client, upstream, page_len).await;

    // A fresh process, so its peak RSS is the cut's alone.
    let pagegate = Pagegate::start(upstream);
    let (n, s) = download(&client, &format!("http://{}/endless", pagegate.addr)).await;
    println!(
        "backend ignoring limit, 2 GiB list: cut to {:.2} MiB (1000 items) in {:.1} ms; pagegate peak RSS {:.1} MiB",
        n as f64 / MIB as f64,
        s * 1000.0,
        pagegate.peak_rss_mib()
    );
}
