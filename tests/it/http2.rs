//! pagegate protects itself from HTTP/2 clients: connections that only answer PINGs are closed
//! after `http2_idle_timeout`, a paced "rapid reset" loop is cut off at `http2_max_resets`, and
//! a stream whose client grants no flow-control window is cut after `send_timeout`, releasing
//! its held page — while a slow reader that makes progress is served whole (real sockets, the
//! `h2` crate as the client).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::support::{Proxy, Upstream, json_response};
use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

type Connection = JoinHandle<Result<(), h2::Error>>;

/// An HTTP/2 connection whose driver runs (and answers PINGs) in a task that ends when pagegate
/// closes the connection.
async fn connect(
    addr: SocketAddr,
    builder: &h2::client::Builder,
) -> (h2::client::SendRequest<Bytes>, Connection) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (client, connection) = builder.handshake(tcp).await.expect("handshake");
    (client, tokio::spawn(connection))
}

fn get(addr: SocketAddr, path: &str) -> http::Request<()> {
    http::Request::get(format!("http://{addr}{path}"))
        .body(())
        .expect("request")
}

/// Waits for the connection's end (cleanly after GOAWAY, or cut); panics if it is still open
/// after `limit`.
async fn closed_within(connection: Connection, limit: Duration) -> Result<(), h2::Error> {
    tokio::time::timeout(limit, connection)
        .await
        .expect("pagegate closed the connection")
        .expect("driver task")
}

#[tokio::test]
async fn connections_that_only_answer_pings_are_closed_after_the_idle_timeout() {
    let upstream = Upstream::start(|_| async { json_response("{}") }).await;
    let yaml = "
http2_keepalive_interval: 100ms
http2_idle_timeout: 500ms
default: {action: pass, upstream: app}
upstreams: {app: {url: '{upstream}'}}
";
    let proxy = Proxy::start(yaml, &upstream).await;
    let builder = h2::client::Builder::new();
    // One connection that never opens a stream, one that asks once and then idles.
    let (_quiet, never) = connect(proxy.addr, &builder).await;
    let (mut client, once) = connect(proxy.addr, &builder).await;
    let (response, _) = client
        .send_request(get(proxy.addr, "/x"), true)
        .expect("send");
    let response = response.await.expect("answer");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    while let Some(data) = body.data().await {
        data.expect("data");
    }
    let answered = Instant::now();
    // GOAWAY: both end cleanly.
    closed_within(never, Duration::from_secs(3))
        .await
        .expect("GOAWAY, not an error");
    closed_within(once, Duration::from_secs(3))
        .await
        .expect("GOAWAY, not an error");
    let after = answered.elapsed();
    assert!(
        after >= Duration::from_millis(400),
        "the idle timeout counts from the last stream's end: {after:?}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_paced_reset_loop_is_cut_off() {
    // A backend slow enough that every reset cancels a request already on its way.
    let upstream = Upstream::start(|_| async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        json_response("{}")
    })
    .await;
    let yaml = "
admin: {listen: 127.0.0.1:0}
http2_max_resets: 20
default: {action: pass, upstream: app}
upstreams: {app: {url: '{upstream}'}}
";
    let proxy = Proxy::start(yaml, &upstream).await;
    let (mut client, connection) = connect(proxy.addr, &h2::client::Builder::new()).await;
    // HEADERS, 5 ms, RST_STREAM — paced under the h2 crate's pending-reset limit.
    let mut streams = 0;
    loop {
        client = match client.ready().await {
            Ok(client) => client,
            Err(_) => break,
        };
        let Ok((_, mut stream)) = client.send_request(get(proxy.addr, "/slow"), true) else {
            break;
        };
        streams += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
        stream.send_reset(h2::Reason::CANCEL);
        assert!(
            streams < 1000,
            "1,000 streams reset and the connection still open"
        );
    }
    let _ = closed_within(connection, Duration::from_secs(3)).await;
    // 20 tokens, a refill of 2 per second over the loop's fraction of a second, and the
    // streams opened before GOAWAY arrived.
    assert!(streams <= 40, "{streams} streams before GOAWAY");
    assert!(
        upstream.seen().len() <= 40,
        "{} requests reached the backend",
        upstream.seen().len()
    );
    let metrics = proxy.admin.expect("a metrics listener");
    let text = crate::support::get(&format!("http://{metrics}/metrics"))
        .await
        .text();
    let line = "pagegate_protections_total{reason=\"http2_resets\"} 1";
    assert!(text.contains(line), "{line} missing from:\n{text}");
    proxy.stop().await;
}

/// A list route whose pages are about 500 KB, with a held-page budget of one page: while a
/// page is pinned, every other list request waits.
async fn one_page_budget(send_timeout: &str) -> (Upstream, Proxy) {
    let upstream = Upstream::start(|_| async {
        http::Response::new(crate::support::bodies::json_items(1, 500, 1000))
    })
    .await;
    let yaml = format!(
        "send_timeout: {send_timeout}
max_held_bytes: 1MiB
default: {{action: deny}}
upstreams: {{app: {{url: '{{upstream}}'}}}}
routes:
  - {{name: events, path: /events, methods: [GET], upstream: app, list: {{max_limit: 1000, default_limit: 1000, max_bytes: 1MiB}}}}
"
    );
    let proxy = Proxy::start(&yaml, &upstream).await;
    (upstream, proxy)
}

#[tokio::test]
async fn a_stream_whose_client_takes_nothing_is_cut_and_releases_its_held_page() {
    // One client grants its streams no window at all; the other takes the first window's
    // worth (64 KiB) and then nothing. Either way the connection itself stays healthy (PINGs
    // answered) while the page cannot be sent.
    let mut no_window = h2::client::Builder::new();
    no_window.initial_window_size(0);
    for builder in [no_window, h2::client::Builder::new()] {
        let (_upstream, proxy) = one_page_budget("300ms").await;
        let (mut client, connection) = connect(proxy.addr, &builder).await;
        let (response, _) = client
            .send_request(get(proxy.addr, "/events"), true)
            .expect("send");
        let response = response.await.expect("head");
        assert_eq!(response.status(), 200);
        // The page is held now; another client's list request waits for its room.
        let start = Instant::now();
        let got = crate::support::get(&proxy.url("/events")).await;
        assert_eq!(got.status, 200, "{}", got.text());
        // It waited for the stalled stream's send_timeout (300 ms), and no longer.
        let waited = start.elapsed();
        assert!(
            (Duration::from_millis(250)..Duration::from_millis(1500)).contains(&waited),
            "the stalled stream's page was released after send_timeout: {waited:?}"
        );
        // The stalled stream was cut, not ended: its body ends in an error — a reset once the
        // client takes more, or the end of a connection none of whose streams take anything.
        let mut body = response.into_body();
        let cut = crate::support::bodies::h2_cut(&mut body, Duration::from_secs(2)).await;
        let cut = cut.expect("the stalled stream was cut, not ended cleanly");
        assert!(cut.is_reset() || cut.is_io(), "{cut}");
        // Either way the connection ends (or is ended) within the send timeout's reach.
        drop((body, client));
        let _ = closed_within(connection, Duration::from_secs(2)).await;
        proxy.stop().await;
    }
}

#[tokio::test]
async fn a_slow_http2_reader_that_makes_progress_is_served_whole() {
    let (_upstream, proxy) = one_page_budget("1s").await;
    let (mut client, _connection) = connect(proxy.addr, &h2::client::Builder::new()).await;
    let (response, _) = client
        .send_request(get(proxy.addr, "/events"), true)
        .expect("send");
    let response = response.await.expect("head");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut received = Vec::new();
    let start = Instant::now();
    // About 160 KB/s: the ~500 KB page takes about 3 send_timeouts.
    while let Some(data) = body.data().await {
        let data = data.expect("the stream was not cut");
        received.extend_from_slice(&data);
        tokio::time::sleep(
            Duration::from_millis(100) * u32::try_from(data.len()).expect("len") / 16_384,
        )
        .await;
        body.flow_control()
            .release_capacity(data.len())
            .expect("release");
    }
    assert!(
        start.elapsed() > Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    let page: serde_json::Value = serde_json::from_slice(&received).expect("a whole JSON page");
    assert_eq!(page.as_array().map(Vec::len), Some(500));
    proxy.stop().await;
}

/// Reads one answer whole: its status.
async fn answer(
    client: &mut h2::client::SendRequest<Bytes>,
    addr: SocketAddr,
    path: &str,
) -> Result<u16, h2::Error> {
    let (response, _) = client.send_request(get(addr, path), true)?;
    let response = response.await?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    while let Some(data) = body.data().await {
        let data = data?;
        let _ = body.flow_control().release_capacity(data.len());
    }
    Ok(status)
}

#[tokio::test]
async fn streams_that_complete_are_never_counted_as_resets() {
    let upstream = Upstream::start(|_| async { json_response("{\"ok\":true}") }).await;
    // Passed answers, pagegate's own refusals (404 with `default: deny` off the route) and
    // empty answers: none is a client's reset, however many there are.
    let yaml = "
http2_max_resets: 10
upstreams: {app: {url: '{upstream}'}}
routes:
  - {name: app, path: /app, upstream: app}
";
    let proxy = Proxy::start(yaml, &upstream).await;
    let builder = h2::client::Builder::new();
    // Sequential, on one connection.
    let (mut client, connection) = connect(proxy.addr, &builder).await;
    for i in 0..10_000 {
        let path = if i % 2 == 0 { "/app" } else { "/nowhere" };
        let status = answer(&mut client, proxy.addr, path)
            .await
            .unwrap_or_else(|e| panic!("request {i} was cut: {e}"));
        assert_eq!(status, if i % 2 == 0 { 200 } else { 404 }, "request {i}");
    }
    // Multiplexed: 100 streams at a time.
    let mut done = 0;
    for _ in 0..100 {
        let batch: Vec<_> = (0..100)
            .map(|i| {
                let mut client = client.clone();
                let addr = proxy.addr;
                tokio::spawn(async move {
                    answer(
                        &mut client,
                        addr,
                        if i % 2 == 0 { "/app" } else { "/nowhere" },
                    )
                    .await
                })
            })
            .collect();
        for task in batch {
            task.await
                .expect("task")
                .expect("every multiplexed request is answered");
            done += 1;
        }
    }
    assert_eq!(done, 10_000);
    assert!(!connection.is_finished(), "the connection stays open");
    proxy.stop().await;
}

#[tokio::test]
async fn answers_cut_into_frames_end_without_counting_as_resets() {
    // 40 KiB answers, which pagegate cuts into 16 KiB frames.
    let upstream = Upstream::start(|_| async { json_response(vec![b' '; 40 * 1024]) }).await;
    let yaml = "
http2_max_resets: 5
default: {action: pass, upstream: app}
upstreams: {app: {url: '{upstream}'}}
";
    let proxy = Proxy::start(yaml, &upstream).await;
    let (mut client, connection) = connect(proxy.addr, &h2::client::Builder::new()).await;
    for i in 0..200 {
        let status = answer(&mut client, proxy.addr, "/big")
            .await
            .unwrap_or_else(|e| panic!("request {i} was cut: {e}"));
        assert_eq!(status, 200);
    }
    assert!(!connection.is_finished());
    proxy.stop().await;
}

/// One route, `/app`, to the upstream.
const ONE_ROUTE: &str = "
upstreams: {app: {url: '{upstream}'}}
routes:
  - {name: app, path: /app, upstream: app}
";

#[tokio::test]
async fn a_bodiless_get_ended_by_an_empty_data_frame_passes() {
    let upstream = Upstream::start(|_| async { json_response("{}") }).await;
    let proxy = Proxy::start(ONE_ROUTE, &upstream).await;
    let (mut client, _connection) = connect(proxy.addr, &h2::client::Builder::new()).await;
    // HEADERS without END_STREAM, then an empty DATA frame that ends the stream.
    let (response, mut stream) = client
        .send_request(get(proxy.addr, "/app"), false)
        .expect("send");
    stream.send_data(Bytes::new(), true).expect("empty data");
    let response = response.await.expect("answer");
    assert_eq!(response.status(), 200);
    proxy.stop().await;
}

#[tokio::test]
async fn cookie_crumbs_reach_an_http1_backend_as_one_header() {
    // HTTP/2 clients may split `Cookie` into crumbs (RFC 9113 §8.2.3); an HTTP/1.1 backend
    // reads one `Cookie` field, so the crumbs are joined with "; " on the way.
    let upstream = Upstream::json("{}").await;
    let proxy = Proxy::start(ONE_ROUTE, &upstream).await;
    let (mut client, _connection) = connect(proxy.addr, &h2::client::Builder::new()).await;
    let mut req = get(proxy.addr, "/app");
    for crumb in ["a=1", "b=2", "session=s3"] {
        req.headers_mut()
            .append("cookie", http::HeaderValue::from_static(crumb));
    }
    let (response, _) = client.send_request(req, true).expect("send");
    assert_eq!(response.await.expect("answer").status(), 200);
    let seen = upstream.last();
    let cookies: Vec<_> = seen.headers.get_all("cookie").iter().collect();
    assert_eq!(cookies, ["a=1; b=2; session=s3"]);
    proxy.stop().await;
}

/// A socket whose reads stop when told: a client that sent its requests and reads no more,
/// while the windows it granted stay open.
struct Pausable {
    inner: TcpStream,
    paused: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl tokio::io::AsyncRead for Pausable {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.paused.load(std::sync::atomic::Ordering::Relaxed) {
            // Never woken again: the reads have stopped for good.
            return std::task::Poll::Pending;
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Pausable {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn streams_whose_client_reads_nothing_hold_little_each() {
    // Every answer is 20 MB, sent as fast as pagegate takes it.
    let upstream = Upstream::start(|_| async {
        http::Response::new(crate::support::bodies::pattern(20 << 20, 64 * 1024))
    })
    .await;
    let replica = crate::support::process::Replica::start(&format!(
        "default: {{action: pass, upstream: app}}\nupstreams: {{app: {{url: '{}'}}}}\n",
        upstream.url()
    ));
    let before = replica.rss_kib();
    let paused = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tcp = Pausable {
        inner: TcpStream::connect(replica.addr()).await.expect("connect"),
        paused: std::sync::Arc::clone(&paused),
    };
    let (mut client, connection) = crate::support::widest_windows()
        .handshake::<_, Bytes>(tcp)
        .await
        .expect("handshake");
    let _connection: Connection = tokio::spawn(connection);
    let mut heads = Vec::new();
    for _ in 0..100 {
        let (response, _) = client
            .send_request(get(replica.addr(), "/big"), true)
            .expect("send");
        heads.push(response);
    }
    let mut bodies = Vec::new();
    for head in heads {
        bodies.push(head.await.expect("head").into_body());
    }
    // The answers are flowing; now the client stops reading its socket.
    paused.store(true, std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let grown = replica.rss_kib().saturating_sub(before);
    // Measured: 25 MiB with two 16 KiB frames a stream (the rest is the 100 upstream
    // connections' read buffers and the chunk each has in hand), 71 MiB with hyper's defaults.
    assert!(grown < 45 * 1024, "{grown} KiB held for 100 unread streams");
    drop(bodies);
}
