//! Generations through a real pagegate: per-route timeouts, request ids end to end, and a
//! reload that open keep-alive connections follow while unchanged upstream clients are kept.

use std::sync::Arc;
use std::time::Duration;

use crate::support::{Proxy, Upstream, full, get, json_response, send};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// An upstream that answers after `?delay_ms=N` milliseconds.
async fn delaying() -> Upstream {
    Upstream::start(|req| async move {
        let delay = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("delay_ms="))
            .and_then(|ms| ms.parse().ok())
            .unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        json_response("[]")
    })
    .await
}

#[tokio::test]
async fn a_route_overrides_its_upstreams_timeouts() {
    let upstream = delaying().await;
    let yaml = "
default: {action: pass, upstream: app}
upstreams: {app: {url: '{upstream}', response_timeout: 5s}}
routes:
  - {name: quick, path: /quick, upstream: app, response_timeout: 100ms}
";
    let proxy = Proxy::start(yaml, &upstream).await;
    let quick = get(&proxy.url("/quick?delay_ms=400")).await;
    let problem = quick.problem(504);
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("100ms")),
        "{problem}"
    );
    let other = get(&proxy.url("/other?delay_ms=400")).await;
    assert_eq!(
        other.status, 200,
        "the upstream's own 5 s applies elsewhere"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn request_ids_travel_to_the_backend_and_back() {
    let upstream = Upstream::json("{}").await;
    let pass = "default: {action: pass, upstream: app}\nupstreams: {app: {url: '{upstream}'}}\n";
    // From a client that is not a trusted proxy, its own id is replaced.
    let untrusted = Proxy::start(pass, &upstream).await;
    let request = http::Request::get(untrusted.url("/a"))
        .header("x-request-id", "abc-123")
        .body(full(Bytes::new()))
        .expect("request");
    let got = send(request).await;
    assert_ne!(got.header("x-request-id"), Some("abc-123"));
    assert_eq!(
        upstream.last().headers["x-request-id"],
        got.header("x-request-id").expect("an id")
    );
    untrusted.stop().await;

    let proxy = Proxy::start(&format!("trusted_proxies: [127.0.0.1]\n{pass}"), &upstream).await;
    let request = http::Request::get(proxy.url("/a"))
        .header("x-request-id", "abc-123")
        .body(full(Bytes::new()))
        .expect("request");
    let got = send(request).await;
    assert_eq!(got.header("x-request-id"), Some("abc-123"));
    assert_eq!(upstream.last().headers["x-request-id"], "abc-123");

    let named = http::Request::get(proxy.url("/a"))
        .header("x-request-id", "kept-1")
        .header("connection", "x-request-id")
        .body(full(Bytes::new()))
        .expect("request");
    assert_eq!(send(named).await.header("x-request-id"), Some("kept-1"));
    assert_eq!(
        upstream.last().headers["x-request-id"],
        "kept-1",
        "naming the id in Connection does not strip it"
    );
    let forged = http::Request::get(proxy.url("/a"))
        .header("x-request-id", "<script>")
        .body(full(Bytes::new()))
        .expect("request");
    let replaced = send(forged).await;
    assert_ne!(replaced.header("x-request-id"), Some("<script>"));
    assert_eq!(
        upstream.last().headers["x-request-id"],
        replaced.header("x-request-id").expect("an id")
    );

    let got = get(&proxy.url("/b")).await;
    let id = got.header("x-request-id").expect("generated").to_owned();
    assert_eq!(upstream.last().headers["x-request-id"], id.as_str());
    let next = get(&proxy.url("/b")).await;
    assert_ne!(
        next.header("x-request-id"),
        Some(id.as_str()),
        "one id per request"
    );
    proxy.stop().await;
}

const BEFORE: &str = "
default: {action: pass, upstream: app}
upstreams:
  app: {url: '{upstream}'}
  spare: {url: 'http://127.0.0.1:9'}
routes:
  - {name: events, path: /events, methods: [GET], upstream: app, list: {default_limit: 10}}
  - {name: other, path: /other, upstream: spare}
";

const AFTER: &str = "
default: {action: deny}
upstreams:
  app: {url: '{upstream}'}
  spare: {url: 'http://127.0.0.1:10'}
routes:
  - {name: events, path: /events, methods: [GET], upstream: app, list: {default_limit: 20}}
  - {name: other, path: /other, upstream: spare}
";

#[tokio::test]
async fn a_reload_reaches_open_connections_and_keeps_unchanged_clients() {
    let upstream = Upstream::json("[]").await;
    let proxy = Proxy::start(BEFORE, &upstream).await;
    let before = proxy.handle.generation();

    // One keep-alive connection for every request below.
    let stream = TcpStream::connect(proxy.addr).await.expect("connect");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let mut ask = async |path: &str| {
        let request = http::Request::get(path)
            .header("host", "pagegate.test")
            .body(full(Bytes::new()))
            .expect("request");
        let response = sender.send_request(request).await.expect("answered");
        let status = response.status();
        let _ = response.into_body().collect().await;
        status
    };
    assert_eq!(ask("/events").await, 200);
    assert_eq!(upstream.last().query(), "limit=10");
    assert_eq!(ask("/elsewhere").await, 200, "default: pass");

    proxy
        .reload(AFTER, &upstream.url())
        .await
        .expect("reloaded");
    assert_eq!(ask("/events").await, 200);
    assert_eq!(
        upstream.last().query(),
        "limit=20",
        "the open connection uses the new route"
    );
    assert_eq!(ask("/elsewhere").await, 404, "default: deny now");

    let after = proxy.handle.generation();
    assert!(
        Arc::ptr_eq(
            before.upstream("app").expect("app"),
            after.upstream("app").expect("app")
        ),
        "an unchanged upstream keeps its client (and pooled connections)"
    );
    assert!(!Arc::ptr_eq(
        before.upstream("spare").expect("spare"),
        after.upstream("spare").expect("spare")
    ));
    proxy.stop().await;
}

#[tokio::test]
async fn a_reload_that_moves_the_listener_is_refused_and_changes_nothing() {
    let upstream = Upstream::json("[]").await;
    let proxy = Proxy::start(BEFORE, &upstream).await;
    let moved = format!(
        "listen: 127.0.0.1:1\ndrain_delay: 0s\n{}",
        BEFORE.replace("{upstream}", &upstream.url())
    );
    let config = pagegate::Config::parse("moved.yaml", &moved).expect("valid");
    let error = proxy.handle.reload(config).await.expect_err("refused");
    assert_eq!(
        error.to_string(),
        "`listen` cannot change while pagegate runs: restart it to apply that change"
    );
    // Every key that differs is named, not only the first.
    let config = pagegate::Config::parse(
        "moved.yaml",
        &format!("max_connections: 7\nsend_timeout: 3s\n{moved}"),
    )
    .expect("valid");
    let error = proxy.handle.reload(config).await.expect_err("refused");
    assert_eq!(
        error.to_string(),
        "`listen`, `max_connections` and `send_timeout` cannot change while pagegate runs: \
         restart it to apply that change"
    );
    // The held-page budgets are not the listener's: they reload.
    proxy
        .reload(&format!("max_held_bytes: 64MiB\n{BEFORE}"), &upstream.url())
        .await
        .expect("the held-page budget reloads");
    assert_eq!(
        get(&proxy.url("/elsewhere")).await.status,
        200,
        "still the old generation"
    );
    proxy.stop().await;
}
