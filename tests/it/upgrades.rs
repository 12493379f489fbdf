//! WebSockets and other upgrades through pagegate: the `Upgrade` request is relayed, the
//! upgraded connection tunnelled both ways and closed when idle; list paths refuse upgrades.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use crate::support::{Proxy, full};
use bytes::Bytes;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A backend that accepts upgrades and echoes what it receives on the upgraded connection.
pub(crate) async fn echo_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service =
                hyper::service::service_fn(|mut req: http::Request<Incoming>| async move {
                    let upgrade = hyper::upgrade::on(&mut req);
                    tokio::spawn(async move {
                        if let Ok(upgraded) = upgrade.await {
                            let mut io = TokioIo::new(upgraded);
                            let mut buf = [0u8; 1024];
                            while let Ok(n) = io.read(&mut buf).await {
                                if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    });
                    let response = http::Response::builder()
                        .status(101)
                        .header("connection", "upgrade")
                        .header("upgrade", "websocket")
                        .header("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
                        .body(full(Bytes::new()))
                        .expect("response");
                    Ok::<_, Infallible>(response)
                });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

const YAML: &str = "
default: {action: pass, upstream: app}
upstreams: {app: {url: '{upstream}', idle_timeout: 500ms}}
routes:
  - {name: events, path: /events, methods: [GET], upstream: app, list: {}}
";

/// Sends a WebSocket upgrade for `path`; the stream and the answer's head, lowercased.
pub(crate) async fn upgrade(addr: SocketAddr, path: &str) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut byte))
            .await
            .expect("an answer in time")
            .expect("read");
        if n == 0 {
            break;
        }
        head.push(byte[0]);
    }
    (stream, String::from_utf8_lossy(&head).to_ascii_lowercase())
}

#[tokio::test]
async fn a_websocket_is_tunnelled_both_ways_and_closed_when_idle() {
    let backend = echo_backend().await;
    let proxy = Proxy::start_url(YAML, &format!("http://{backend}")).await;
    let (mut stream, head) = upgrade(proxy.addr, "/chat").await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("\r\nupgrade: websocket"), "{head}");
    assert!(head.contains("\r\nconnection: upgrade"), "{head}");
    assert!(head.contains("\r\nsec-websocket-accept: "), "{head}");
    for message in [&b"ping-1"[..], b"a second message"] {
        stream.write_all(message).await.expect("write");
        let mut echoed = vec![0u8; message.len()];
        tokio::time::timeout(Duration::from_secs(3), stream.read_exact(&mut echoed))
            .await
            .expect("echoed in time")
            .expect("read");
        assert_eq!(echoed, message);
    }
    // Silent for longer than the idle timeout: the tunnel closes.
    let mut rest = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut rest))
        .await
        .expect("closed in time");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    proxy.stop().await;
}

#[tokio::test]
async fn a_list_path_refuses_upgrades() {
    let backend = echo_backend().await;
    let proxy = Proxy::start_url(YAML, &format!("http://{backend}")).await;
    let (_stream, head) = upgrade(proxy.addr, "/events").await;
    assert!(head.starts_with("http/1.1 400"), "{head}");
    proxy.stop().await;
}

#[tokio::test]
async fn only_websocket_upgrades_are_relayed() {
    // h2c would let the client speak HTTP/2 straight to the backend, past every route: the
    // upgrade is not relayed, so the backend's 101 is one nobody asked for (502).
    let backend = echo_backend().await;
    let proxy = Proxy::start_url(YAML, &format!("http://{backend}")).await;
    let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
    stream
        .write_all(b"GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")
        .await
        .expect("write");
    let mut head = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut head))
        .await
        .expect("an answer")
        .expect("read");
    let head = String::from_utf8_lossy(&head[..n]);
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    proxy.stop().await;
}

#[tokio::test]
async fn a_websocket_holds_its_routes_concurrency_slot_while_it_lives() {
    let backend = echo_backend().await;
    let yaml = "
default: {action: pass, upstream: app}
upstreams: {app: {url: '{upstream}', idle_timeout: 30s}}
routes:
  - {name: ws, path: /ws, upstream: app, limits: {concurrency: {per_client: 2}}}
";
    let proxy = Proxy::start_url(yaml, &format!("http://{backend}")).await;
    let (first, head) = upgrade(proxy.addr, "/ws").await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    let (_second, head) = upgrade(proxy.addr, "/ws").await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    // Two tunnels open: a third is over the client's limit.
    let (_third, head) = upgrade(proxy.addr, "/ws").await;
    assert!(head.starts_with("http/1.1 429"), "{head}");
    // One tunnel closes: its slot is free again.
    drop(first);
    let mut admitted = false;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (_next, head) = upgrade(proxy.addr, "/ws").await;
        if head.starts_with("http/1.1 101") {
            admitted = true;
            break;
        }
        assert!(head.starts_with("http/1.1 429"), "{head}");
    }
    assert!(admitted, "the closed tunnel's slot was freed");
    // Open tunnels would keep the shutdown waiting for its grace.
    drop((_second, _third));
    proxy.stop().await;
}

#[tokio::test]
async fn upgrades_queued_behind_full_tunnels_are_answered_not_dropped() {
    let backend = echo_backend().await;
    let yaml = "
max_connections: 10
admin: {listen: 127.0.0.1:0}
default: {action: pass, upstream: app}
upstreams: {app: {url: '{upstream}', idle_timeout: 30s}}
";
    let proxy = Proxy::start_url(yaml, &format!("http://{backend}")).await;
    let mut tunnels = Vec::new();
    for _ in 0..10 {
        let (tunnel, head) = upgrade(proxy.addr, "/ws").await;
        assert!(head.starts_with("http/1.1 101"), "{head}");
        tunnels.push(tunnel);
    }
    // Every slot is held by a tunnel, none of which can be evicted: 40 more upgrades wait,
    // then each is answered 503 with Retry-After.
    let queued: Vec<_> = (0..40)
        .map(|_| tokio::spawn(upgrade(proxy.addr, "/ws")))
        .collect();
    for task in queued {
        let (_, head) = task.await.expect("task");
        assert!(head.starts_with("http/1.1 503"), "{head}");
        assert!(head.contains("retry-after: 1\r\n"), "{head}");
        assert!(head.contains("application/problem+json"), "{head}");
    }
    // The tunnels were left alone.
    for tunnel in &mut tunnels {
        tunnel.write_all(b"ping").await.expect("write");
        let mut echo = [0u8; 4];
        tunnel.read_exact(&mut echo).await.expect("echo");
        assert_eq!(&echo, b"ping");
    }
    let text = proxy.metrics_text().await;
    let line = "pagegate_protections_total{reason=\"max_connections\"} 40";
    assert!(text.contains(line), "{line} missing from:\n{text}");
    drop(tunnels);
    proxy.stop().await;
}

#[tokio::test]
async fn a_drain_gives_open_tunnels_the_grace_to_finish() {
    let backend = echo_backend().await;
    let yaml = "
shutdown_grace: 5s
default: {action: pass, upstream: app}
upstreams: {app: {url: '{upstream}', idle_timeout: 30s}}
";
    let proxy = Proxy::start_url(yaml, &format!("http://{backend}")).await;
    let (mut stream, head) = upgrade(proxy.addr, "/ws").await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    let addr = proxy.addr;
    let stopping = tokio::spawn(proxy.stop());
    // The listener closes, but the tunnel still carries bytes both ways.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while TcpStream::connect(addr).await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the listener stays open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stream.write_all(b"still here").await.expect("write");
    let mut echoed = [0u8; 10];
    tokio::time::timeout(Duration::from_secs(3), stream.read_exact(&mut echoed))
        .await
        .expect("echoed during the drain")
        .expect("read");
    assert_eq!(&echoed, b"still here");
    assert!(!stopping.is_finished(), "shutdown waits for the tunnel");
    // The tunnel ends: shutdown completes well before the grace is over.
    drop(stream);
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(3), stopping)
        .await
        .expect("stopped once the tunnel ended")
        .expect("task");
    assert!(started.elapsed() < Duration::from_secs(3));
}
