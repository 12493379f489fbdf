//! Every access-log `outcome` a client can cause, driven through the real server: passed,
//! clamped and truncated pages (held and rebuilt ones included), refused, limited,
//! upstream_error, overloaded, aborted, client_stalled and client_closed. (`internal` needs a
//! bug in pagegate; it is covered where the rescue sorts errors.)

use std::collections::HashMap;
use std::time::Duration;

use crate::support::{Proxy, Upstream, json_response};
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &str = "0123456789abcdef0123456789abcdef-test";

/// The backend: list paths answer `limit` items (or 50 for /wide, whatever the limit),
/// /broken promises 1,000 bytes and sends 10, /big streams 4 MiB, /upload reads its body.
async fn backend() -> Upstream {
    Upstream::start(|req: http::Request<hyper::body::Incoming>| async move {
        let q: HashMap<String, String> =
            form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let limit: u64 = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(10);
        let after: u64 = q.get("id_gt").and_then(|v| v.parse().ok()).unwrap_or(0);
        match req.uri().path() {
            "/wide" => http::Response::new(crate::support::bodies::json_items(1, 50, 10)),
            "/broken" => {
                // The head and 10 bytes go out; 100 ms later the body fails.
                let frames = futures_util::stream::unfold(0, |step| async move {
                    let frame: Result<http_body::Frame<Bytes>, pagegate::BoxError> = match step {
                        0 => Ok(http_body::Frame::data(Bytes::from_static(b"0123456789"))),
                        1 => {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            Err("backend broke off".into())
                        }
                        _ => return None,
                    };
                    Some((frame, step + 1))
                });
                let mut response = http::Response::new(StreamBody::new(frames).boxed());
                response
                    .headers_mut()
                    .insert("content-length", http::HeaderValue::from_static("1000"));
                response
            }
            "/big" => http::Response::new(crate::support::bodies::pattern(4 << 20, 16 * 1024)),
            "/upload" => {
                let _ = req.into_body().collect().await;
                json_response("{}")
            }
            _ => http::Response::new(crate::support::bodies::json_items(after + 1, limit, 10)),
        }
    })
    .await
}

fn yaml() -> String {
    format!(
        "
cursors: {{keys: [{{id: 1, secret: {SECRET}}}]}}
default: {{action: deny}}
upstreams:
  app: {{url: '{{upstream}}', idle_timeout: 300ms}}
  gone: {{url: 'http://127.0.0.1:9', connect_timeout: 200ms}}
routes:
  - {{name: plain, path: /plain, upstream: app}}
  - {{name: big, path: /big, upstream: app}}
  - {{name: broken, path: /broken, upstream: app}}
  - {{name: upload, path: /upload, upstream: app}}
  - {{name: gone, path: /gone, upstream: gone}}
  - {{name: limited, path: /limited, upstream: app, limits: {{rate: {{per_client: {{requests: 1, per: 1m}}}}}}}}
  - name: events
    path: /events
    methods: [GET]
    upstream: app
    list: {{default_limit: 10, max_limit: 20, on_violation: clamp}}
  - name: wide
    path: /wide
    methods: [GET]
    upstream: app
    list: {{default_limit: 10, max_limit: 20}}
  - name: keyset
    path: /keyset
    methods: [GET]
    upstream: app
    list:
      default_limit: 10
      max_limit: 20
      on_violation: clamp
      keyset: {{keys: [{{field: /id, param: id_gt}}]}}
"
    )
}

#[tokio::test]
#[expect(
    clippy::too_many_lines,
    reason = "one access log read back after every outcome, so all of them run in one test"
)]
async fn every_outcome_a_client_can_cause_is_logged_as_what_happened() {
    let (captured, _guard) = crate::support::logs::capture();
    let upstream = backend().await;
    let proxy = Proxy::start(&yaml(), &upstream).await;
    let url = |path: &str| proxy.url(path);

    // Read whole: passed, a page held and relayed, a page rebuilt only to add its cursor.
    for path in ["/plain", "/events", "/keyset"] {
        assert_eq!(crate::support::get(&url(path)).await.status, 200, "{path}");
        assert_eq!(captured.outcome(path).await, "passed", "{path}");
    }
    // A keyset walk: every page (rebuilt to carry its cursor) is logged passed.
    let mut next = Some(url("/keyset?limit=5"));
    let mut pages = 0;
    while let Some(page) = next.take().filter(|_| pages < 5) {
        let got = crate::support::get(&page).await;
        assert_eq!(got.status, 200);
        pages += 1;
        next = got
            .header("link")
            .and_then(|l| l.strip_prefix('<'))
            .and_then(|l| l.split_once('>'))
            .map(|(u, _)| {
                if u.starts_with('/') {
                    url(u)
                } else {
                    u.to_owned()
                }
            });
    }
    let walk = captured.outcomes("/keyset", 6).await;
    assert_eq!(walk.len(), 6, "{walk:?}");
    assert!(walk.iter().all(|o| o == "passed"), "{walk:?}");

    // A lowered page size, plain and rebuilt: clamped.
    let got = crate::support::get(&url("/events?limit=500")).await;
    assert_eq!(
        got.header("pagegate-clamped"),
        Some("limit=20; requested=500")
    );
    let events = captured.outcomes("/events", 2).await;
    assert_eq!(events, ["passed", "clamped"], "the earlier one passed");
    crate::support::get(&url("/keyset?limit=500")).await;
    let walk = captured.outcomes("/keyset", 7).await;
    assert_eq!(walk.last().map(String::as_str), Some("clamped"), "{walk:?}");

    // More items than the page: truncated.
    assert_eq!(crate::support::get(&url("/wide")).await.status, 200);
    assert_eq!(captured.outcome("/wide").await, "truncated");
    // Off every route with `default: deny`: refused.
    assert_eq!(crate::support::get(&url("/nowhere")).await.status, 404);
    assert_eq!(captured.outcome("/nowhere").await, "refused");
    // The second request in a minute: limited (the first passed).
    assert_eq!(crate::support::get(&url("/limited")).await.status, 200);
    assert_eq!(crate::support::get(&url("/limited")).await.status, 429);
    let limited = captured.outcomes("/limited", 2).await;
    assert_eq!(limited, ["passed", "limited"]);
    // Nothing listens: upstream_error.
    assert_eq!(crate::support::get(&url("/gone")).await.status, 502);
    assert_eq!(captured.outcome("/gone").await, "upstream_error");
    // The backend breaks off mid-body: aborted.
    let response = crate::support::client()
        .request(
            http::Request::get(url("/broken"))
                .body(crate::support::full(Bytes::new()))
                .expect("request"),
        )
        .await
        .expect("the head arrives");
    assert!(
        response.into_body().collect().await.is_err(),
        "the body is cut"
    );
    assert_eq!(captured.outcome("/broken").await, "aborted");

    // An upload that stalls past idle_timeout: client_stalled (408).
    let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        .await
        .expect("write");
    let mut answer = vec![0u8; 12];
    stream.read_exact(&mut answer).await.expect("answered");
    assert_eq!(&answer, b"HTTP/1.1 408");
    assert_eq!(captured.outcome("/upload").await, "client_stalled");

    // A client that leaves after the head: client_closed.
    let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
    stream
        .write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut head = vec![0u8; 12];
    stream.read_exact(&mut head).await.expect("head");
    drop(stream);
    assert_eq!(captured.outcome("/big").await, "client_closed");
    proxy.stop().await;
}

/// A backend that answers after 3 s: a request to it is under way for a while.
async fn slow_backend() -> Upstream {
    Upstream::start(|_| async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        json_response("{}")
    })
    .await
}

/// Waits until a request has reached `upstream`.
async fn reached(upstream: &Upstream) {
    while upstream.seen().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_newcomer_with_no_slot_is_logged_overloaded() {
    let (captured, _guard) = crate::support::logs::capture();
    let upstream = slow_backend().await;
    let yaml = "
max_connections: 1
default: {action: pass, upstream: app}
upstreams: {app: {url: '{upstream}'}}
";
    let proxy = Proxy::start(yaml, &upstream).await;
    let busy_url = proxy.url("/busy");
    let busy = tokio::spawn(async move { crate::support::get(&busy_url).await });
    reached(&upstream).await;
    let got = crate::support::get(&proxy.url("/waiting")).await;
    assert_eq!(got.status, 503);
    assert_eq!(got.header("retry-after"), Some("1"));
    assert_eq!(captured.outcome("/waiting").await, "overloaded");
    assert_eq!(busy.await.expect("task").status, 200);
    assert_eq!(captured.outcome("/busy").await, "passed");
    proxy.stop().await;
}

#[tokio::test]
async fn a_client_that_leaves_before_the_head_is_counted_abandoned() {
    let (captured, _guard) = crate::support::logs::capture();
    let upstream = slow_backend().await;
    let yaml = "
admin: {listen: 127.0.0.1:0}
default: {action: pass, upstream: app}
upstreams: {app: {url: '{upstream}'}}
";
    let proxy = Proxy::start(yaml, &upstream).await;
    let metric = "pagegate_requests_abandoned_total 0\n";
    assert!(proxy.metrics_text().await.contains(metric));
    // A client that gives up on a slow backend: the route's counters never see it.
    let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
    let head = "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n";
    stream.write_all(head.as_bytes()).await.expect("write");
    reached(&upstream).await;
    drop(stream);
    assert_eq!(captured.outcome("/slow").await, "client_closed");
    let text = proxy.metrics_text().await;
    assert!(
        text.contains("pagegate_requests_abandoned_total 1\n"),
        "{text}"
    );
    assert!(!text.contains("pagegate_requests_total{"), "{text}");
    proxy.stop().await;
}
