//! The proxy core against real upstreams: forwarding, headers, streaming both ways, timeouts,
//! unreachable upstreams, client disconnects and the default policy.

use std::time::Duration;

use crate::support::{Proxy, Upstream, bodies, full, get, send};
use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::sync::{mpsc, oneshot};

/// Default timeouts, generous enough for a loaded 2-core CI machine.
const PASS: &str = "
default: {action: pass, upstream: app}
upstreams:
  app: {url: '{upstream}'}
routes:
  - name: events
    path: /events
    upstream: app
    list: {}
";

#[tokio::test]
async fn forwards_requests_with_forwarding_headers_and_without_hop_by_hop_ones() {
    let upstream = Upstream::json("{}").await;
    let proxy = Proxy::start(PASS, &upstream).await;
    let request = http::Request::get(proxy.url("/things/7?b=2&a=1"))
        // A type the form check read cannot be removed: untyped, Rack would parse a form.
        .header("connection", "keep-alive, x-hop, content-type")
        .header("content-type", "text/plain")
        .header("x-hop", "secret")
        .header("keep-alive", "timeout=5")
        .header("x-end-to-end", "kept")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-host", "evil.example")
        .header("x-http-method-override", "GET")
        // Zend Framework 1 and old Symfony serve the path these name.
        .header("x-original-url", "/events?limit=100000000")
        .header("x_rewrite_url", "/events")
        // CGI-style servers (Puma, Unicorn, PHP-FPM) read `_` as `-`.
        .header("x_http_method_override", "GET")
        .header("x-forwarded_for", "6.6.6.6")
        .header("api_key", "kept")
        .body(full(Bytes::new()))
        .expect("request");
    let got = send(request).await;
    assert_eq!(got.status, 200);
    let seen = upstream.last();
    assert_eq!(seen.target, "/things/7?b=2&a=1");
    assert_eq!(seen.headers["x-end-to-end"], "kept");
    for hop in [
        "x-hop",
        "keep-alive",
        "x-http-method-override",
        "x_http_method_override",
        "x-forwarded_for",
        "x-original-url",
        "x_rewrite_url",
    ] {
        assert!(!seen.headers.contains_key(hop), "{hop} was forwarded");
    }
    assert_eq!(seen.headers["api_key"], "kept", "other names with `_` pass");
    assert_eq!(seen.headers["content-type"], "text/plain");
    assert_eq!(
        seen.headers["x-forwarded-for"], "127.0.0.1",
        "a client's own X-Forwarded-For is replaced unless it is a trusted proxy"
    );
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert_eq!(
        seen.headers["x-forwarded-host"],
        proxy.addr.to_string().as_str()
    );
    assert_eq!(
        seen.headers["forwarded"],
        format!("for=127.0.0.1;proto=http;host=\"{}\"", proxy.addr).as_str()
    );
    assert_eq!(
        seen.headers["host"],
        upstream.addr.to_string().as_str(),
        "host: upstream is the default"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn the_header_a_limit_keys_by_reaches_the_backend_as_counted() {
    // pagegate counts this client under its `X-Api-Key`; the backend must act on that key, not
    // on none (`Connection: x-api-key`) nor on an `X_Api_Key` a CGI-style server reads as it.
    let upstream = Upstream::json("{}").await;
    let limits =
        "{key: header, key_header: X-Api-Key, rate: {per_client: {requests: 50, per: 1m}}}";
    let config = PASS.replace("    list: {}\n", &format!("    limits: {limits}\n"));
    let proxy = Proxy::start(&config, &upstream).await;
    let request = http::Request::get(proxy.url("/events"))
        .header("connection", "x-api-key")
        .header("x-api-key", "counted")
        .header("x_api_key", "someone-else")
        .body(full(Bytes::new()))
        .expect("request");
    let got = send(request).await;
    assert_eq!(got.status, 200, "{}", got.text());
    let seen = upstream.last();
    assert_eq!(seen.headers["x-api-key"], "counted");
    assert!(
        !seen.headers.contains_key("x_api_key"),
        "{:?}",
        seen.headers
    );
    proxy.stop().await;
    // Configured with `_`, its dashed twin (which Puma 6.4.3 and later keeps) is dropped.
    let config = config.replace("X-Api-Key", "api_key");
    let proxy = Proxy::start(&config, &upstream).await;
    let request = http::Request::get(proxy.url("/events"))
        .header("api_key", "counted")
        .header("api-key", "someone-else")
        .body(full(Bytes::new()))
        .expect("request");
    assert_eq!(send(request).await.status, 200);
    let seen = upstream.last();
    assert_eq!(seen.headers["api_key"], "counted");
    assert!(!seen.headers.contains_key("api-key"), "{:?}", seen.headers);
    proxy.stop().await;
}

#[tokio::test]
async fn host_can_be_preserved_or_fixed() {
    let upstream = Upstream::json("{}").await;
    for (mode, expected) in [
        ("preserve", "client.example"),
        ("api.internal", "api.internal"),
    ] {
        let yaml = format!(
            "upstreams: {{app: {{url: '{{upstream}}', host: {mode}}}}}\ndefault: {{action: pass, upstream: app}}\n"
        );
        let proxy = Proxy::start(&yaml, &upstream).await;
        let request = http::Request::get(proxy.url("/"))
            .header("host", "client.example")
            .body(full(Bytes::new()))
            .expect("request");
        assert_eq!(send(request).await.status, 200);
        assert_eq!(upstream.last().headers["host"], expected);
        proxy.stop().await;
    }
}

#[tokio::test]
async fn unmatched_requests_follow_the_default_policy() {
    let upstream = Upstream::json("{}").await;
    let deny = "upstreams: {app: {url: '{upstream}'}}\ndefault: {action: deny}\nroutes: [{path: /events, upstream: app}]\n";
    let proxy = Proxy::start(deny, &upstream).await;
    let problem = get(&proxy.url("/admin")).await.problem(404);
    assert_eq!(problem["type"], "urn:pagegate:problem:no-route");
    assert!(
        upstream.seen().is_empty(),
        "a denied request reached the upstream"
    );
    assert_eq!(get(&proxy.url("/events")).await.status, 200);
    // Percent-encoded unreserved characters cannot dodge a route.
    assert_eq!(get(&proxy.url("/ev%65nts")).await.status, 200);
    proxy.stop().await;
}

#[tokio::test]
async fn a_large_response_streams_through_before_the_upstream_finishes() {
    // The upstream sends one frame, then waits until the client has seen it: only a proxy that
    // relays frame by frame can let this response complete.
    let (seen_tx, seen_rx) = mpsc::channel::<()>(1);
    let seen_rx = std::sync::Arc::new(tokio::sync::Mutex::new(seen_rx));
    let upstream = Upstream::start(move |_| {
        let seen_rx = std::sync::Arc::clone(&seen_rx);
        async move {
            let frames = futures_util::stream::unfold(0u8, move |step| {
                let seen_rx = std::sync::Arc::clone(&seen_rx);
                async move {
                    match step {
                        0 => Some((Ok(http_body::Frame::data(Bytes::from_static(b"first"))), 1)),
                        1 => {
                            seen_rx.lock().await.recv().await;
                            Some((Ok(http_body::Frame::data(Bytes::from_static(b"second"))), 2))
                        }
                        _ => None,
                    }
                }
            });
            let body: pagegate::Body = http_body_util::StreamBody::new(frames).boxed();
            http::Response::new(body)
        }
    })
    .await;
    let proxy = Proxy::start(PASS, &upstream).await;
    let response = crate::support::client()
        .request(
            http::Request::get(proxy.url("/export"))
                .body(full(Bytes::new()))
                .expect("request"),
        )
        .await
        .expect("response");
    let mut body = response.into_body();
    let first = body
        .frame()
        .await
        .expect("a frame")
        .expect("data")
        .into_data()
        .expect("data");
    assert_eq!(&first[..], b"first");
    seen_tx.send(()).await.expect("signal");
    let rest = body.collect().await.expect("rest").to_bytes();
    assert_eq!(&rest[..], b"second");
    proxy.stop().await;
}

#[tokio::test]
async fn bodies_larger_than_any_buffer_pass_both_ways_intact() {
    const SIZE: u64 = 64 * 1024 * 1024;
    let upstream = Upstream::start(|req: http::Request<hyper::body::Incoming>| async move {
        // Echo the upload's length and checksum, then send a large body back.
        let mut body = req.into_body();
        let (mut length, mut sum) = (0u64, 0u64);
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.expect("upload frame").into_data() {
                length += data.len() as u64;
                sum = data
                    .iter()
                    .fold(sum, |s, b| s.wrapping_mul(31).wrapping_add(u64::from(*b)));
            }
        }
        let mut response = http::Response::new(bodies::pattern(SIZE, 16 * 1024));
        response.headers_mut().insert(
            "x-upload",
            format!("{length}:{sum}").parse().expect("header"),
        );
        response
    })
    .await;
    let proxy = Proxy::start(PASS, &upstream).await;
    let request = http::Request::post(proxy.url("/upload"))
        .body(bodies::pattern(SIZE, 64 * 1024))
        .expect("request");
    let response = crate::support::client()
        .request(request)
        .await
        .expect("response");
    let expected_sum = {
        let block: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
        (0..SIZE / block.len() as u64).fold(0u64, |s, _| {
            block
                .iter()
                .fold(s, |s, b| s.wrapping_mul(31).wrapping_add(u64::from(*b)))
        })
    };
    assert_eq!(
        response.headers()["x-upload"],
        format!("{SIZE}:{expected_sum}").as_str()
    );
    let mut body = response.into_body();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        received += frame
            .expect("frame")
            .into_data()
            .map_or(0, |d| d.len() as u64);
    }
    assert_eq!(received, SIZE);
    proxy.stop().await;
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_502_problem() {
    // A port no other test is handed (nothing listens on it).
    let url = format!("http://127.0.0.1:{}", crate::support::redis::free_port());
    let proxy = Proxy::start_url(PASS, &url).await;
    let problem = get(&proxy.url("/anything")).await.problem(502);
    assert_eq!(problem["type"], "urn:pagegate:problem:upstream-unavailable");
    assert_eq!(problem["detail"], "the upstream is unavailable");
    proxy.stop().await;
}

/// Short timeouts, for the tests about timeouts only.
const IMPATIENT: &str = "
default: {action: pass, upstream: app}
upstreams:
  app: {url: '{upstream}', response_timeout: 500ms, idle_timeout: 500ms}
";

#[tokio::test]
async fn a_slow_upstream_is_a_504_problem() {
    let upstream = Upstream::start(|_| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        crate::support::json_response("{}")
    })
    .await;
    let proxy = Proxy::start(IMPATIENT, &upstream).await;
    let problem = get(&proxy.url("/slow")).await.problem(504);
    assert_eq!(problem["type"], "urn:pagegate:problem:upstream-timeout");
    assert_eq!(
        problem["detail"],
        "the upstream did not answer within 500ms"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_body_that_stalls_mid_stream_is_cut_after_the_idle_timeout() {
    let upstream = Upstream::start(|_| async {
        let frames = futures_util::stream::unfold(0u8, |step| async move {
            if step == 0 {
                return Some((
                    Ok(http_body::Frame::data(Bytes::from_static(b"partial"))),
                    1,
                ));
            }
            tokio::time::sleep(Duration::from_secs(30)).await;
            None::<(Result<http_body::Frame<Bytes>, pagegate::BoxError>, u8)>
        });
        http::Response::new(http_body_util::StreamBody::new(frames).boxed())
    })
    .await;
    let proxy = Proxy::start(IMPATIENT, &upstream).await;
    let response = crate::support::client()
        .request(
            http::Request::get(proxy.url("/stall"))
                .body(full(Bytes::new()))
                .expect("request"),
        )
        .await
        .expect("head arrives");
    let started = tokio::time::Instant::now();
    let result =
        tokio::time::timeout(Duration::from_secs(10), response.into_body().collect()).await;
    assert!(
        result
            .expect("cut well before the upstream's 30 s")
            .is_err(),
        "the body must end with an error"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    proxy.stop().await;
}

/// Sends `()` when dropped: the upstream drops it when its exchange is abandoned.
struct DropSignal(Option<oneshot::Sender<()>>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

#[tokio::test]
async fn a_client_that_disconnects_mid_body_cancels_the_upstream_exchange() {
    let (dropped_tx, dropped_rx) = oneshot::channel();
    let signal = std::sync::Arc::new(std::sync::Mutex::new(Some(dropped_tx)));
    let upstream = Upstream::start(move |_| {
        let guard = DropSignal(signal.lock().expect("lock").take());
        async move {
            // An endless body; it holds the guard, so its drop shows the exchange was abandoned.
            let frames = futures_util::stream::unfold(guard, |guard| async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                Some((
                    Ok(http_body::Frame::data(Bytes::from_static(b"row\n"))),
                    guard,
                ))
            });
            let body: pagegate::Body = http_body_util::StreamBody::new(frames).boxed();
            http::Response::new(body)
        }
    })
    .await;
    let proxy = Proxy::start(PASS, &upstream).await;
    let response = crate::support::client()
        .request(
            http::Request::get(proxy.url("/export"))
                .body(full(Bytes::new()))
                .expect("request"),
        )
        .await
        .expect("head");
    let mut body = response.into_body();
    body.frame().await.expect("a frame").expect("data");
    drop(body); // the client goes away mid-stream
    tokio::time::timeout(Duration::from_secs(5), dropped_rx)
        .await
        .expect("the upstream body was dropped after the client left")
        .expect("signal");
    proxy.stop().await;
}

#[tokio::test]
async fn a_client_that_disconnects_before_the_head_cancels_the_upstream_request() {
    let (dropped_tx, dropped_rx) = oneshot::channel();
    let signal = std::sync::Arc::new(std::sync::Mutex::new(Some(dropped_tx)));
    let upstream = Upstream::start(move |_| {
        let guard = DropSignal(signal.lock().expect("lock").take());
        async move {
            let _guard = guard;
            tokio::time::sleep(Duration::from_secs(60)).await;
            crate::support::json_response("{}")
        }
    })
    .await;
    let yaml = "upstreams: {app: {url: '{upstream}', response_timeout: 60s}}\ndefault: {action: pass, upstream: app}\n";
    let proxy = Proxy::start(yaml, &upstream).await;
    let url = proxy.url("/slow");
    let request = tokio::spawn(async move { get(&url).await });
    while upstream.seen().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    request.abort(); // drops the client connection
    tokio::time::timeout(Duration::from_secs(5), dropped_rx)
        .await
        .expect("the upstream handler was dropped after the client left")
        .expect("signal");
    proxy.stop().await;
}

#[tokio::test]
async fn h2c_clients_are_served() {
    let upstream = Upstream::json("{\"ok\":true}").await;
    let proxy = Proxy::start(PASS, &upstream).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let response = client
        .request(
            http::Request::get(proxy.url("/h2"))
                .body(full(Bytes::new()))
                .expect("request"),
        )
        .await
        .expect("h2c response");
    assert_eq!(response.version(), http::Version::HTTP_2);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(&body[..], b"{\"ok\":true}");
    assert_eq!(upstream.last().target, "/h2");
    proxy.stop().await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_forwarding_chains_are_kept_and_appended_to() {
    let upstream = Upstream::json("{}").await;
    let yaml = format!("trusted_proxies: [127.0.0.1]\n{PASS}");
    let proxy = Proxy::start(&yaml, &upstream).await;
    let request = http::Request::get(proxy.url("/a"))
        .header("x-forwarded-for", "6.6.6.6, 203.0.113.9")
        .header("x-forwarded-proto", "https")
        .body(full(Bytes::new()))
        .expect("request");
    assert_eq!(send(request).await.status, 200);
    let seen = upstream.last();
    assert_eq!(
        seen.headers["x-forwarded-for"],
        "6.6.6.6, 203.0.113.9, 127.0.0.1"
    );
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
    proxy.stop().await;
}
