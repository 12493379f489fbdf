//! Traces through a real pagegate: with `traces` unset, `traceparent` and `tracestate` reach
//! the upstream as a trusted proxy sent them (any client's with `trace_context: anyone`), and
//! not at all from any other client; with it set, the upstream's parent is pagegate's span
//! in the client's trace, the access log names the trace and span, and the spans reach an
//! OTLP/HTTP receiver the test runs.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::support::{Proxy, Upstream, full, send};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

/// What an OTLP/HTTP receiver got: each request's path, content type and body.
type Received = Arc<Mutex<Vec<(String, String, Bytes)>>>;

/// A collector's OTLP/HTTP endpoint that records every export and answers 200.
async fn receiver() -> (SocketAddr, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let received = Received::default();
    let record = Arc::clone(&received);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let record = Arc::clone(&record);
            let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                let record = Arc::clone(&record);
                async move {
                    let path = req.uri().path().to_owned();
                    let kind = req
                        .headers()
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    let body = req.into_body().collect().await.map(|b| b.to_bytes());
                    record
                        .lock()
                        .expect("lock")
                        .push((path, kind, body.unwrap_or_default()));
                    Ok::<_, Infallible>(http::Response::new(full(Bytes::new())))
                }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, received)
}

fn traced_get(url: &str) -> http::Request<pagegate::Body> {
    http::Request::get(url)
        .header("traceparent", format!("00-{TRACE}-{PARENT}-01"))
        .header("tracestate", "vendor=opaque")
        .body(full(Bytes::new()))
        .expect("request")
}

fn hex(bytes: &str) -> Vec<u8> {
    (0..bytes.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&bytes[i..i + 2], 16).expect("hex"))
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn without_traces_an_untrusted_clients_trace_headers_are_removed() {
    let upstream = Upstream::json("[]").await;
    let yaml = "upstreams: {app: {url: '{upstream}'}}\ndefault: {action: pass, upstream: app}\n";
    let proxy = Proxy::start(yaml, &upstream).await;
    let request = http::Request::get(proxy.url("/events"))
        .header("traceparent", format!("00-{TRACE}-{PARENT}-01"))
        .header("tracestate", "vendor=opaque")
        .header("tracestate", "other=second")
        .header("b3", format!("{TRACE}-{PARENT}-1"))
        .header("x-b3-sampled", "1")
        .header("uber-trace-id", format!("{TRACE}:{PARENT}:0:1"))
        .header("x-cloud-trace-context", format!("{TRACE}/1;o=1"))
        .header("baggage", "tenant=7")
        .body(full(Bytes::new()))
        .expect("request");
    assert_eq!(send(request).await.status, 200);
    let seen = upstream.last();
    for name in [
        "traceparent",
        "tracestate",
        "b3",
        "x-b3-sampled",
        "uber-trace-id",
        "x-cloud-trace-context",
    ] {
        assert!(
            seen.headers.get(name).is_none(),
            "{name}: {:?}",
            seen.headers
        );
    }
    assert_eq!(
        seen.headers["baggage"], "tenant=7",
        "baggage picks no trace"
    );
    proxy.stop().await;

    // `anyone`: passed unchanged.
    let anyone = format!("trace_context: anyone\n{yaml}");
    let proxy = Proxy::start(&anyone, &upstream).await;
    assert_eq!(send(traced_get(&proxy.url("/events"))).await.status, 200);
    let seen = upstream.last();
    assert_eq!(
        seen.headers.get("traceparent").map(|v| v.as_bytes()),
        Some(format!("00-{TRACE}-{PARENT}-01").as_bytes())
    );
    assert_eq!(
        seen.headers.get("tracestate").map(|v| v.as_bytes()),
        Some(&b"vendor=opaque"[..])
    );
    proxy.stop().await;

    // A word it does not know: the file's position and the two it takes.
    let error = pagegate::Config::parse("test.yaml", &format!("trace_context: everyone\n{yaml}"))
        .expect_err("refused")
        .to_string();
    assert!(
        error.contains("test.yaml:1:16") && error.contains("write trusted (the default) or anyone"),
        "{error}"
    );
}

#[tokio::test]
async fn without_traces_a_trusted_proxys_trace_headers_pass_unchanged() {
    let (captured, _guard) = crate::support::logs::capture();
    let upstream = Upstream::json("[]").await;
    let yaml = "trusted_proxies: [127.0.0.1/32]\nupstreams: {app: {url: '{upstream}'}}\ndefault: {action: pass, upstream: app}\n";
    let proxy = Proxy::start(yaml, &upstream).await;
    let mut request = traced_get(&proxy.url("/events"));
    request
        .headers_mut()
        .insert("x-b3-sampled", http::HeaderValue::from_static("1"));
    assert_eq!(send(request).await.status, 200);
    let seen = upstream.last();
    assert_eq!(seen.headers["x-b3-sampled"], "1", "a trusted proxy's B3");
    assert_eq!(
        seen.headers.get("traceparent").expect("traceparent"),
        &format!("00-{TRACE}-{PARENT}-01")
    );
    assert_eq!(
        seen.headers.get("tracestate").expect("tracestate"),
        "vendor=opaque"
    );
    captured.outcome("/events").await;
    let logged = captured.requests().pop().expect("an access-log event");
    assert!(logged.get("trace_id").is_none(), "no span, no id: {logged}");
    proxy.stop().await;
}

#[tokio::test]
async fn with_traces_the_upstream_the_log_and_the_collector_share_the_trace() {
    let (captured, _guard) = crate::support::logs::capture();
    let (collector, received) = receiver().await;
    let upstream = Upstream::json("[]").await;
    let yaml = format!(
        "traces: {{endpoint: 'http://{collector}', service_name: events-sidecar}}
trusted_proxies: [127.0.0.1]
upstreams: {{app: {{url: '{{upstream}}'}}}}
routes:
  - {{name: events, path: /events, upstream: app}}
"
    );
    let proxy = Proxy::start(&yaml, &upstream).await;
    assert_eq!(send(traced_get(&proxy.url("/events"))).await.status, 200);
    // The upstream's parent: pagegate's span for the call, in the client's trace.
    let seen = upstream.last();
    let parts = traceparent(&seen.headers);
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    assert_eq!((parts[0], parts[1], parts[3]), ("00", TRACE, "01"));
    let call_span = parts[2].to_owned();
    assert_ne!(
        call_span, PARENT,
        "the upstream's parent is pagegate's span"
    );
    assert_eq!(
        seen.headers.get("tracestate").expect("tracestate"),
        "vendor=opaque"
    );
    // The access log names the trace and the server span.
    captured.outcome("/events").await;
    let logged = captured.requests().pop().expect("an access-log event");
    assert_eq!(logged["trace_id"], TRACE, "{logged}");
    let server_span = logged["span_id"].as_str().expect("span_id").to_owned();
    assert_eq!(server_span.len(), 16);
    assert_ne!(server_span, call_span);
    // Stopping sends the buffered spans: both, in the client's trace, as OTLP protobuf.
    proxy.stop().await;
    let received = received.lock().expect("lock").clone();
    let (path, kind, body) = received.first().expect("an export reached the collector");
    assert_eq!(path, "/v1/traces");
    assert_eq!(kind, "application/x-protobuf");
    let all: Vec<u8> = received.iter().flat_map(|r| r.2.to_vec()).collect();
    for (what, id) in [
        ("trace", TRACE),
        ("server span", server_span.as_str()),
        ("upstream call span", call_span.as_str()),
        ("client's parent", PARENT),
    ] {
        assert!(
            contains(&all, &hex(id)),
            "the {what} id {id} was not exported"
        );
    }
    assert!(
        contains(body, b"events-sidecar"),
        "the service name was exported"
    );
}

#[test]
fn a_collector_url_that_is_not_http_is_refused_with_the_fix() {
    for (endpoint, says) in [
        (
            "https://collector:4318",
            "https:// collectors are not supported yet",
        ),
        ("collector:4318", "write the collector's OTLP/HTTP address"),
    ] {
        let yaml = format!("traces: {{endpoint: '{endpoint}'}}\nroutes: []\n");
        let error = pagegate::Config::parse("t.yaml", &yaml)
            .expect_err("refused")
            .to_string();
        assert!(error.contains("t.yaml:1:"), "{error}");
        assert!(error.contains(says), "{error}");
    }
    let ratio = "traces: {endpoint: 'http://c:4318', sample_ratio: 2}\nroutes: []\n";
    let error = pagegate::Config::parse("t.yaml", ratio)
        .expect_err("refused")
        .to_string();
    assert!(error.contains("between 0 and 1"), "{error}");
}

#[tokio::test]
async fn a_client_that_is_not_a_trusted_proxy_starts_a_trace_of_its_own() {
    let (captured, _guard) = crate::support::logs::capture();
    let (collector, received) = receiver().await;
    let upstream = Upstream::json("[]").await;
    let yaml = format!(
        "traces: {{endpoint: 'http://{collector}'}}
upstreams: {{app: {{url: '{{upstream}}'}}}}
routes:
  - {{name: events, path: /events, upstream: app}}
"
    );
    let proxy = Proxy::start(&yaml, &upstream).await;
    let mut request = traced_get(&proxy.url("/events"));
    request
        .headers_mut()
        .insert("b3", http::HeaderValue::from_static("1"));
    assert_eq!(send(request).await.status, 200);
    let seen = upstream.last();
    let parts = traceparent(&seen.headers);
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    assert_ne!(parts[1], TRACE, "the client does not choose the trace");
    let state = seen.headers.get("tracestate");
    assert!(state.is_none(), "nor its state: {state:?}");
    let b3 = seen.headers.get("b3");
    assert!(b3.is_none(), "nor its sampling in another format: {b3:?}");
    captured.outcome("/events").await;
    let logged = captured.requests().pop().expect("an access-log event");
    assert_eq!(logged["trace_id"], parts[1], "{logged}");
    proxy.stop().await;
    // Sampled by pagegate's ratio (1 by default), and linked to the client's span.
    let received = received.lock().expect("lock").clone();
    let all: Vec<u8> = received.iter().flat_map(|r| r.2.to_vec()).collect();
    for (what, id) in [
        ("trace", parts[1]),
        ("client's trace", TRACE),
        ("client's span", PARENT),
    ] {
        assert!(
            contains(&all, &hex(id)),
            "the {what} id {id} was not exported"
        );
    }
}

/// The four fields of the `traceparent` the upstream received.
fn traceparent(headers: &http::HeaderMap) -> Vec<String> {
    let value = headers.get("traceparent").expect("traceparent");
    let parts: Vec<String> = value
        .to_str()
        .expect("ascii")
        .split('-')
        .map(str::to_owned)
        .collect();
    assert_eq!(parts.len(), 4, "{value:?}");
    parts
}

#[tokio::test]
async fn spans_of_methods_outside_the_known_set_are_named_http() {
    let (collector, received) = receiver().await;
    let upstream = Upstream::json("[]").await;
    let yaml = format!(
        "traces: {{endpoint: 'http://{collector}'}}\n\
         default: {{action: pass, upstream: app}}\n\
         upstreams: {{app: {{url: '{{upstream}}'}}}}\n"
    );
    let proxy = Proxy::start(&yaml, &upstream).await;
    let request = http::Request::builder()
        .method("XYZ123")
        .uri(proxy.url("/a"))
        .body(full(Bytes::new()))
        .expect("request");
    send(request).await;
    proxy.stop().await;
    let all: Vec<u8> = (received.lock().expect("lock").iter())
        .flat_map(|r| r.2.to_vec())
        .collect();
    assert!(contains(&all, b"_OTHER"), "the method is _OTHER");
    // A span's name is field 5 of the OTLP `Span` (tag 0x2a), then its length.
    assert!(contains(&all, b"\x2a\x04HTTP"), "the span is named HTTP");
    assert!(
        !contains(&all, b"\x2a\x06XYZ123"),
        "no span is named by the method"
    );
    assert!(
        contains(&all, b"http.request.method_original"),
        "the method sent is an attribute"
    );
}
