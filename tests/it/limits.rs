//! pagegate protects itself: silent sockets, slowloris heads, idle keep-alive connections and
//! vanished HTTP/2 peers are closed after their timeouts (real sockets, short test timeouts).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::support::{Proxy, Upstream, json_response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const YAML: &str = "
header_read_timeout: 300ms
http2_keepalive_interval: 200ms
http2_keepalive_timeout: 200ms
default: {action: pass, upstream: app}
upstreams: {app: {url: '{upstream}'}}
";

/// Reads until pagegate closes the connection; returns what it sent and when it closed.
async fn until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return (out, start.elapsed()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "still open after {limit:?}; got {:?}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
}

async fn proxy() -> (Upstream, Proxy, SocketAddr) {
    let upstream = Upstream::start(|_| async { json_response("{}") }).await;
    let proxy = Proxy::start(YAML, &upstream).await;
    let addr = proxy.addr;
    (upstream, proxy, addr)
}

#[tokio::test]
async fn a_silent_socket_is_closed_after_the_header_read_timeout() {
    let (_upstream, proxy, addr) = proxy().await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let (_, after) = until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(
        after >= Duration::from_millis(250),
        "closed after {after:?}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_slowloris_head_is_cut() {
    let (upstream, proxy, addr) = proxy().await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let start = Instant::now();
    // One header byte every 50 ms: never a whole head.
    let mut closed = false;
    for byte in b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        .iter()
        .cycle()
        .take(200)
    {
        if stream.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut probe = [0u8; 512];
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_millis(1), stream.read(&mut probe)).await
        {
            closed = true;
            break;
        }
    }
    assert!(
        closed,
        "the connection stayed open for {:?}",
        start.elapsed()
    );
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert!(upstream.seen().is_empty());
    proxy.stop().await;
}

#[tokio::test]
async fn an_idle_http1_keep_alive_connection_is_closed() {
    let (upstream, proxy, addr) = proxy().await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let (answer, after) = until_closed(&mut stream, Duration::from_secs(5)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        after >= Duration::from_millis(250),
        "kept alive a while first: {after:?}"
    );
    assert_eq!(upstream.seen().len(), 1);
    proxy.stop().await;
}

#[tokio::test]
async fn an_http2_peer_that_stops_answering_pings_is_disconnected() {
    let (_upstream, proxy, addr) = proxy().await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // The connection preface and an empty SETTINGS frame, then silence: no ACKs, no PING
    // answers, as from a peer that vanished.
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .expect("write");
    let (sent, after) = until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(!sent.is_empty(), "pagegate spoke HTTP/2 first");
    assert!(after < Duration::from_secs(3), "{after:?}");
    proxy.stop().await;
}

#[tokio::test]
async fn a_head_over_max_head_bytes_gets_431_and_a_smaller_one_passes() {
    let upstream = Upstream::start(|_| async { json_response("{}") }).await;
    let yaml = format!("max_head_bytes: 16KiB\n{YAML}");
    let proxy = Proxy::start(&yaml, &upstream).await;
    let head = |size: usize| {
        format!(
            "GET /h HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\nConnection: close\r\n\r\n",
            "a".repeat(size)
        )
    };
    let mut small = TcpStream::connect(proxy.addr).await.expect("connect");
    small
        .write_all(head(12 * 1024).as_bytes())
        .await
        .expect("write");
    let (answer, _) = until_closed(&mut small, Duration::from_secs(5)).await;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    assert_eq!(upstream.seen().len(), 1);

    let mut large = TcpStream::connect(proxy.addr).await.expect("connect");
    let _ = large.write_all(head(400 * 1024).as_bytes()).await;
    let (answer, _) = until_closed(&mut large, Duration::from_secs(5)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert_eq!(
        upstream.seen().len(),
        1,
        "the large head never reached the backend"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn silent_sockets_at_max_connections_do_not_lock_a_new_client_out() {
    let upstream = Upstream::start(|_| async { json_response("{}") }).await;
    // A header-read timeout far longer than the test: only closing idle connections first
    // can make room.
    let yaml = "max_connections: 100
header_read_timeout: 30s
admin: {listen: 127.0.0.1:0}
default: {action: pass, upstream: app}
upstreams: {app: {url: '{upstream}'}}
";
    let proxy = Proxy::start(yaml, &upstream).await;
    let mut silent = Vec::new();
    for _ in 0..150 {
        silent.push(TcpStream::connect(proxy.addr).await.expect("connect"));
    }
    let start = Instant::now();
    let got = tokio::time::timeout(
        Duration::from_secs(5),
        crate::support::get(&proxy.url("/served")),
    )
    .await
    .expect("served before 5 s");
    assert_eq!(got.status, 200);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    // The oldest silent sockets made room: the first one was closed, the last one is open.
    let (_, after) = until_closed(&mut silent[0], Duration::from_secs(1)).await;
    assert!(after < Duration::from_secs(1));
    let mut byte = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(200), silent[149].read(&mut byte))
            .await
            .is_err(),
        "the newest silent socket is still open"
    );
    // 50 silent newcomers and the client waited: each evicted at most one silent socket, the
    // oldest first (the client's own connection, closed once answered, may have made room for
    // the last waiter).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let evicted = proxy.protections("evicted_silent").await;
    assert!(
        (50..=51).contains(&evicted),
        "{evicted} silent sockets evicted"
    );
    drop(silent);
    proxy.stop().await;
}

#[tokio::test]
async fn at_max_connections_an_idle_connection_makes_room_and_a_busy_one_is_left_alone() {
    // The backend answers /slow after 1 s.
    let upstream = Upstream::start(|req| async move {
        if req.uri().path() == "/slow" {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        json_response("{}")
    })
    .await;
    let yaml = format!("max_connections: 2\n{YAML}").replace("300ms", "30s");
    let proxy = Proxy::start(&yaml, &upstream).await;
    // A: a request in flight. B: a keep-alive connection between requests.
    let mut busy = TcpStream::connect(proxy.addr).await.expect("connect");
    busy.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut idle = TcpStream::connect(proxy.addr).await.expect("connect");
    idle.write_all(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut head = [0u8; 12];
    idle.read_exact(&mut head).await.expect("answered");
    assert_eq!(&head, b"HTTP/1.1 200");
    tokio::time::sleep(Duration::from_millis(100)).await;
    // C is served at once: B made room; A's request was not cut.
    let start = Instant::now();
    let got = crate::support::get(&proxy.url("/new")).await;
    assert_eq!(got.status, 200);
    assert!(
        start.elapsed() < Duration::from_millis(800),
        "{:?}",
        start.elapsed()
    );
    until_closed(&mut idle, Duration::from_secs(1)).await;
    let (answer, _) = until_closed(&mut busy, Duration::from_secs(3)).await;
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_max_connections_the_open_files_limit_cannot_serve_is_refused() {
    let yaml = "listen: 127.0.0.1:0\nmax_connections: 1000000000\nupstreams: {app: {url: 'http://127.0.0.1:9'}}\n";
    let config = pagegate::Config::parse("test.yaml", yaml).expect("valid");
    let Err(error) = pagegate::Server::bind(config).await else {
        panic!("a billion connections cannot fit the open-files limit");
    };
    let message = error.to_string();
    assert!(
        message.starts_with("max_connections is 1000000000, but the open-files limit is "),
        "{message}"
    );
    assert!(message.contains("raise the limit"), "{message}");
}

/// A backend whose list page is 15 MiB: more than a socket's buffers, so a client that never
/// reads stalls pagegate's writes with the page held (and its bytes reserved) the whole time.
async fn big_page_backend() -> Upstream {
    Upstream::start(|_| async {
        http::Response::new(crate::support::bodies::json_items(1, 15_000, 1000))
    })
    .await
}

/// The list route for [`big_page_backend`], after `settings`.
fn big_page_yaml(settings: &str) -> String {
    format!(
        "{settings}
default: {{action: deny}}
upstreams: {{app: {{url: '{{upstream}}'}}}}
routes:
  - {{name: events, path: /events, methods: [GET], upstream: app, list: {{max_limit: 20000, default_limit: 20000, max_bytes: 16MiB}}}}
"
    )
}

/// Asks for the page (as `forwarded_for` behind a trusted proxy, when given) on a socket with
/// a tiny receive window, and never reads.
async fn stalled_request(addr: SocketAddr, forwarded_for: Option<&str>) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("small window");
    let mut stream = socket.connect(addr).await.expect("connect");
    let xff = forwarded_for.map_or_else(String::new, |ip| format!("X-Forwarded-For: {ip}\r\n"));
    let request = format!("GET /events HTTP/1.1\r\nHost: x\r\n{xff}\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    stream
}

#[tokio::test]
async fn clients_that_never_read_their_held_pages_are_cut_and_release_them() {
    let upstream = big_page_backend().await;
    let yaml = big_page_yaml("send_timeout: 300ms\nmax_held_bytes: 17MiB");
    let proxy = Proxy::start(&yaml, &upstream).await;
    let stalled = vec![stalled_request(proxy.addr, None).await];
    // The page is held now, reserving all but 1 MiB of the budget.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = Instant::now();
    let got = crate::support::get(&proxy.url("/events")).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    // The stalled clients were disconnected mid-page: reading now drains what the kernel held
    // for them, then the connection ends, short of the whole page.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for mut stream in stalled {
        let mut sink = vec![0u8; 1 << 20];
        let mut received = 0usize;
        let ended = loop {
            match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut sink)).await {
                Ok(Ok(0) | Err(_)) => break true,
                Ok(Ok(n)) => received += n,
                Err(_) => break false,
            }
        };
        assert!(ended, "a client that never read was left connected");
        assert!(
            received < 15_000 * 1000,
            "cut before the page ended: {received} bytes"
        );
    }
    proxy.stop().await;
}

#[tokio::test]
async fn clients_holding_pages_they_never_read_cannot_starve_another_client() {
    let upstream = big_page_backend().await;
    // Clients are told apart by X-Forwarded-For behind a trusted proxy (the test's loopback).
    let yaml = big_page_yaml(
        "trusted_proxies: [127.0.0.1]\nsend_timeout: 60s\nmax_held_bytes: 34MiB\nmax_held_bytes_per_client: 17MiB",
    );
    let proxy = Proxy::start(&yaml, &upstream).await;
    // Client A asks twice and never reads: its first page is held (15 MiB of its 17 MiB
    // share), its second is refused at once instead of taking the rest of the budget.
    let mut stalled = Vec::new();
    for _ in 0..2 {
        stalled.push(stalled_request(proxy.addr, Some("203.0.113.1")).await);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut head = [0u8; 64];
    let n = stalled[1].read(&mut head).await.expect("an answer");
    assert!(
        String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 503"),
        "{}",
        String::from_utf8_lossy(&head[..n])
    );
    // Client B is served: A could not fill the budget.
    let request = http::Request::get(proxy.url("/events"))
        .header("x-forwarded-for", "203.0.113.2")
        .body(crate::support::full(bytes::Bytes::new()))
        .expect("request");
    let got = crate::support::send(request).await;
    assert_eq!(got.status, 200, "{}", got.text());
    drop(stalled);
    proxy.stop().await;
}

#[tokio::test]
async fn every_protection_is_counted_in_metrics() {
    let upstream = Upstream::start(|_| async { json_response("[]") }).await;
    let yaml = format!(
        "admin: {{listen: 127.0.0.1:0}}\n{YAML}routes:\n  - {{name: events, path: /events, methods: [GET], upstream: app, list: {{}}}}\n"
    );
    let proxy = Proxy::start(&yaml, &upstream).await;
    // A silent socket, closed at header_read_timeout.
    let mut silent = TcpStream::connect(proxy.addr).await.expect("connect");
    until_closed(&mut silent, Duration::from_secs(5)).await;
    // A lower-case method on a list path.
    let mut lower = TcpStream::connect(proxy.addr).await.expect("connect");
    lower
        .write_all(b"get /events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let (answer, _) = until_closed(&mut lower, Duration::from_secs(5)).await;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 400"));
    let metrics = proxy.admin.expect("a metrics listener");
    let text = crate::support::get(&format!("http://{metrics}/metrics"))
        .await
        .text();
    for line in [
        "pagegate_protections_total{reason=\"header_read_timeout\"} 1",
        "pagegate_protections_total{reason=\"method_case\"} 1",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
    proxy.stop().await;
}

#[tokio::test]
async fn a_client_over_max_connections_per_client_is_closed_at_once() {
    let upstream = Upstream::start(|_| async { json_response("{}") }).await;
    let yaml = format!("max_connections_per_client: 2\n{YAML}");
    let proxy = Proxy::start(&yaml, &upstream).await;
    let held: Vec<TcpStream> = vec![
        TcpStream::connect(proxy.addr).await.expect("1"),
        TcpStream::connect(proxy.addr).await.expect("2"),
    ];
    // Give the accept loop a moment to take both.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut third = TcpStream::connect(proxy.addr)
        .await
        .expect("3: accepted, then closed");
    let (_, after) = until_closed(&mut third, Duration::from_secs(2)).await;
    assert!(
        after < Duration::from_millis(250),
        "closed at once, not by a timeout: {after:?}"
    );
    drop(held);
    // Once they are gone, the client is served again.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(crate::support::get(&proxy.url("/again")).await.status, 200);
    proxy.stop().await;
}

#[tokio::test]
async fn a_trusted_proxy_has_no_cap_of_its_own_on_connections() {
    // Behind a CDN or an ingress every connection comes from its address: it carries many
    // clients, so max_connections_per_client does not count it.
    let upstream = Upstream::start(|_| async { json_response("{}") }).await;
    let yaml = format!("max_connections_per_client: 2\ntrusted_proxies: [127.0.0.1]\n{YAML}");
    let proxy = Proxy::start(&yaml, &upstream).await;
    let held: Vec<TcpStream> = vec![
        TcpStream::connect(proxy.addr).await.expect("1"),
        TcpStream::connect(proxy.addr).await.expect("2"),
        TcpStream::connect(proxy.addr).await.expect("3"),
    ];
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(crate::support::get(&proxy.url("/a")).await.status, 200);
    drop(held);
    proxy.stop().await;
}
