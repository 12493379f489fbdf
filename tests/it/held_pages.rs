//! Held list pages a few clients cannot pin: four addresses with eight sockets each that ask
//! for pages and never read them fill the held-page budget, yet a list request from another
//! address is served within 3 s on every try for a minute, because the page stalled the longest
//! is cut to make room (real sockets on 127.0.0.2 … 127.0.0.6); on HTTP/2, only its stream.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::support::{Proxy, Upstream};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;

/// One page is about 5 MB: more than the kernel's socket buffers take, so a client that never
/// reads leaves most of it held.
async fn backend() -> Upstream {
    Upstream::start(|_| async {
        http::Response::new(crate::support::bodies::json_items(1, 5_000, 1000))
    })
    .await
}

/// Asks for a page from `from` on a socket with a tiny receive window and never reads it; a
/// new socket every 5 s, for as long as the test runs.
async fn never_reads(proxy: SocketAddr, from: [u8; 4]) {
    loop {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("small window");
        socket
            .bind(SocketAddr::from((from, 0)))
            .expect("bind a loopback address");
        if let Ok(mut stream) = socket.connect(proxy).await {
            let _ = stream
                .write_all(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
                .await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_held_by_clients_that_never_read_cannot_lock_out_another_client() {
    let upstream = backend().await;
    // Each address may hold two pages (12 MiB); four addresses hold more than the 36 MiB
    // budget. send_timeout alone would keep each pinned for a minute.
    let yaml = "
admin: {listen: 127.0.0.1:0}
send_timeout: 60s
max_held_bytes: 36MiB
max_held_bytes_per_client: 12MiB
default: {action: deny}
upstreams: {app: {url: '{upstream}'}}
routes:
  - {name: events, path: /events, methods: [GET], upstream: app, list: {max_limit: 5000, default_limit: 5000, max_bytes: 6MiB}}
";
    let proxy = Proxy::start(yaml, &upstream).await;
    let mut attackers = Vec::new();
    for address in 2..=5 {
        for _ in 0..8 {
            attackers.push(tokio::spawn(never_reads(proxy.addr, [127, 0, 0, address])));
        }
    }
    // The budget fills.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let text = proxy.metrics_text().await;
    let held = crate::metrics::value(&text, "pagegate_held_page_bytes").expect("held bytes");
    assert!(
        held > 24.0 * 1024.0 * 1024.0 && held <= 36.0 * 1024.0 * 1024.0,
        "the held pages fill the budget: {held}"
    );
    let client = crate::support::client_from([127, 0, 0, 6]);
    let started = Instant::now();
    let mut tries = 0;
    while started.elapsed() < Duration::from_secs(60) {
        let asked = Instant::now();
        let request = http::Request::get(proxy.url("/events"))
            .body(crate::support::full(bytes::Bytes::new()))
            .expect("request");
        let got = tokio::time::timeout(
            Duration::from_secs(3),
            crate::support::send_with(&client, request),
        )
        .await
        .unwrap_or_else(|_| panic!("try {tries}: no whole page within 3 s"));
        assert_eq!(
            got.status,
            200,
            "try {tries} after {:?}: {}",
            asked.elapsed(),
            got.text()
        );
        tries += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let cuts = proxy.protections("held_stream_cut").await;
    assert!(cuts > 0, "pages were cut to make room");
    for attacker in attackers {
        attacker.abort();
    }
    proxy.stop().await;
}

/// A proxy with room for one 1 MB page (2 MiB), its clients told apart by X-Forwarded-For as
/// behind an ingress.
async fn room_for_one_page() -> (Upstream, Proxy) {
    let upstream = Upstream::start(|_| async {
        http::Response::new(crate::support::bodies::json_items(1, 1_000, 1000))
    })
    .await;
    let yaml = "
trusted_proxies: [127.0.0.1]
send_timeout: 60s
max_held_bytes: 2MiB
default: {action: deny}
upstreams: {app: {url: '{upstream}'}}
routes:
  - {name: events, path: /events, methods: [GET], upstream: app, list: {max_limit: 1000, default_limit: 1000, max_bytes: 2MiB}}
";
    let proxy = Proxy::start(yaml, &upstream).await;
    (upstream, proxy)
}

/// One HTTP/2 connection to `proxy`, made by `builder`, and the task driving it.
async fn h2_connection(
    proxy: &Proxy,
    builder: &h2::client::Builder,
) -> (
    h2::client::SendRequest<bytes::Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let tcp = tokio::net::TcpStream::connect(proxy.addr)
        .await
        .expect("connect");
    let (client, connection) = builder.handshake(tcp).await.expect("handshake");
    (client, tokio::spawn(connection))
}

/// `GET /events` as `client` (its X-Forwarded-For).
fn get(proxy: &Proxy, client: &str) -> http::Request<()> {
    http::Request::get(format!("http://{}/events", proxy.addr))
        .header("x-forwarded-for", client)
        .body(())
        .expect("request")
}

#[tokio::test]
async fn on_http2_only_the_unread_stream_is_cut_and_its_connection_serves_on() {
    let (_upstream, proxy) = room_for_one_page().await;
    // One connection, as from an ingress that carries many clients, with a connection window
    // large enough that A's unread window does not starve the others.
    let (client, connection) = h2_connection(
        &proxy,
        h2::client::Builder::new().initial_connection_window_size(16 << 20),
    )
    .await;
    // Stream A takes its head and the first window, then nothing: its page stays held.
    let mut sender = client.clone().ready().await.expect("ready");
    let (unread, _) = sender
        .send_request(get(&proxy, "203.0.113.1"), true)
        .expect("send");
    let unread = unread.await.expect("a head");
    assert_eq!(unread.status(), 200);
    // Stream B, on the same connection, finds the budget full: A is cut, B is served whole.
    let started = Instant::now();
    let mut sender = client.clone().ready().await.expect("ready");
    let (read, _) = sender
        .send_request(get(&proxy, "203.0.113.2"), true)
        .expect("send");
    let read = tokio::time::timeout(Duration::from_secs(3), async move {
        let response = read.await.expect("a head");
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        let mut bytes = 0;
        while let Some(data) = body.data().await {
            let data = data.expect("data");
            bytes += data.len();
            let _ = body.flow_control().release_capacity(data.len());
        }
        bytes
    })
    .await
    .expect("B is served within 3 s");
    assert!(read > 1_000_000, "{read} bytes");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "A had gone unread 1 s first"
    );
    assert!(!connection.is_finished(), "the connection serves on");
    // And a third stream still works on it.
    let mut sender = client.ready().await.expect("ready");
    let (third, _) = sender
        .send_request(get(&proxy, "203.0.113.3"), true)
        .expect("send");
    assert_eq!(third.await.expect("a head").status(), 200);
    // A was the stream cut: its body ends in a reset, not a clean end.
    let mut body = unread.into_body();
    let cut = crate::support::bodies::h2_cut(&mut body, Duration::from_secs(2)).await;
    let cut = cut.expect("A was cut, not ended cleanly");
    assert!(cut.is_reset(), "{cut}");
    proxy.stop().await;
}

#[tokio::test]
async fn a_zero_window_http2_client_cannot_pin_its_page() {
    let (_upstream, proxy) = room_for_one_page().await;
    // A grants its streams no window at all.
    let (client, _connection) =
        h2_connection(&proxy, h2::client::Builder::new().initial_window_size(0)).await;
    let mut sender = client.ready().await.expect("ready");
    let (unread, _) = sender
        .send_request(get(&proxy, "203.0.113.1"), true)
        .expect("send");
    let unread = unread.await.expect("a head");
    assert_eq!(unread.status(), 200);
    // B, another client, is served within 3 s, once A's page has gone unread 1 s.
    let started = Instant::now();
    let request = http::Request::get(proxy.url("/events"))
        .header("x-forwarded-for", "203.0.113.2")
        .body(crate::support::full(bytes::Bytes::new()))
        .expect("request");
    let got = tokio::time::timeout(Duration::from_secs(3), crate::support::send(request))
        .await
        .expect("B is served within 3 s");
    assert_eq!(got.status, 200, "{}", got.text());
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "A's page was held until cut"
    );
    drop(unread);
    proxy.stop().await;
}
