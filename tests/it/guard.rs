//! The list guard end to end: backends that ignore `limit`, send too many bytes, wrap lists in
//! envelopes, or do not send JSON at all.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::support::{Proxy, Upstream, get};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::Value;

fn config(list: &str) -> String {
    format!(
        "
upstreams: {{app: {{url: '{{upstream}}'}}}}
routes:
  - name: events
    path: /events
    methods: [GET]
    upstream: app
    list: {{default_limit: 100, max_limit: 1000, {list}}}
"
    )
}

/// A backend that ignores `limit` and streams a JSON array of `total_mib` MiB (about 64-byte
/// items), counting the bytes it actually sent and whether its body was dropped early.
async fn endless(total_mib: u64, sent: Arc<AtomicU64>) -> Upstream {
    Upstream::start(move |_| {
        let sent = Arc::clone(&sent);
        async move {
            let item =
                r#"{"id":1,"status":"active","message":"an item the client never asked for"}"#;
            let mut block = String::new();
            for _ in 0..1000 {
                block.push_str(item);
                block.push(',');
            }
            let block = Bytes::from(block);
            let total = total_mib * 1024 * 1024;
            let frames = futures_util::stream::unfold(0u64, move |done| {
                let (block, sent) = (block.clone(), Arc::clone(&sent));
                async move {
                    let chunk = match done {
                        0 => Bytes::from_static(b"["),
                        d if d >= total => return None,
                        d if d + block.len() as u64 >= total => Bytes::from_static(br#"{"id":0}]"#),
                        _ => block,
                    };
                    sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    let next = done + chunk.len() as u64;
                    let next = if chunk.ends_with(b"]") && done > 0 {
                        total
                    } else {
                        next
                    };
                    Some((
                        Ok::<_, pagegate::BoxError>(http_body::Frame::data(chunk)),
                        next,
                    ))
                }
            });
            let mut response = http::Response::new(http_body_util::StreamBody::new(frames).boxed());
            response
                .headers_mut()
                .insert("content-type", "application/json".parse().expect("header"));
            response
        }
    })
    .await
}

#[tokio::test]
async fn a_2_gib_list_from_a_backend_ignoring_limit_is_cut_at_the_page() {
    let sent = Arc::new(AtomicU64::new(0));
    let upstream = endless(2048, Arc::clone(&sent)).await;
    let proxy = Proxy::start(&config("max_bytes: 4MiB"), &upstream).await;
    let started = Instant::now();
    let got = get(&proxy.url("/events?limit=250")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("pagegate-truncated"), Some("items"));
    let list = got.json();
    assert_eq!(list.as_array().expect("valid JSON array").len(), 250);
    assert_eq!(
        got.header("content-length"),
        Some(got.body.len().to_string().as_str())
    );
    // pagegate stopped reading right after the page: memory stays bounded by the page, not 2 GiB.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let read = sent.load(Ordering::Relaxed);
    assert!(
        read < 16 * 1024 * 1024,
        "the upstream sent {read} bytes for a 250-item page"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    // The rest was never read (the counter above), and the proxy still serves the next request.
    assert_eq!(
        get(&proxy.url("/events?limit=5"))
            .await
            .json()
            .as_array()
            .expect("list")
            .len(),
        5
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_list_over_max_bytes_is_cut_at_the_last_whole_item() {
    let sent = Arc::new(AtomicU64::new(0));
    let upstream = endless(64, Arc::clone(&sent)).await;
    let proxy = Proxy::start(&config("max_bytes: 64KiB"), &upstream).await;
    let got = get(&proxy.url("/events?limit=1000")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("pagegate-truncated"), Some("bytes"));
    assert!(got.body.len() <= 64 * 1024 + 1, "{} bytes", got.body.len());
    let items = got.json().as_array().expect("valid JSON").len();
    assert!(
        (800..1000).contains(&items),
        "{items} whole items fit in 64 KiB"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn an_envelope_is_closed_properly_when_cut() {
    let body: String = format!(
        r#"{{"total": 5000, "data": [{}], "meta": {{"page": 1}}}}"#,
        (0..5000)
            .map(|i| format!(r#"{{"id":{i},"tags":["a]","b}}"]}}"#))
            .collect::<Vec<_>>()
            .join(",")
    );
    let upstream = Upstream::start(move |_| {
        let body = body.clone();
        async move { crate::support::json_response(body) }
    })
    .await;
    let proxy = Proxy::start(&config("items: /data"), &upstream).await;
    let got = get(&proxy.url("/events?limit=3")).await;
    assert_eq!(got.header("pagegate-truncated"), Some("items"));
    let value = got.json();
    assert_eq!(value["total"], 5000);
    assert_eq!(value["data"].as_array().expect("data").len(), 3);
    assert_eq!(value["data"][2]["tags"][1], "b}");
    proxy.stop().await;
}

#[tokio::test]
async fn a_complete_page_is_relayed_byte_for_byte() {
    let body = "[ {\"id\": 1} ,\n {\"id\": 2} ]\n";
    let upstream = Upstream::start(
        move |req: http::Request<hyper::body::Incoming>| async move {
            assert_eq!(
                req.headers()["accept-encoding"],
                "identity",
                "the scanner needs plain bytes"
            );
            let mut response = crate::support::json_response(body);
            response
                .headers_mut()
                .insert("etag", "\"v1\"".parse().expect("etag"));
            response
        },
    )
    .await;
    let proxy = Proxy::start(&config(""), &upstream).await;
    let request = http::Request::get(proxy.url("/events"))
        .header("accept-encoding", "gzip, br")
        .body(crate::support::full(Bytes::new()))
        .expect("request");
    let got = crate::support::send(request).await;
    assert_eq!(got.text(), body);
    assert_eq!(
        got.header("etag"),
        Some("\"v1\""),
        "an untouched body keeps its validators"
    );
    assert_eq!(got.header("pagegate-truncated"), None);
    proxy.stop().await;
}

#[tokio::test]
async fn rewritten_bodies_drop_validators() {
    let body: String = serde_json::to_string(
        &(0..50)
            .map(|i| serde_json::json!({"id": i}))
            .collect::<Vec<_>>(),
    )
    .expect("json");
    let upstream = Upstream::start(move |_| {
        let body = body.clone();
        async move {
            let mut response = crate::support::json_response(body);
            response
                .headers_mut()
                .insert("etag", "\"v1\"".parse().expect("etag"));
            response
                .headers_mut()
                .insert("content-md5", "abc".parse().expect("md5"));
            response
        }
    })
    .await;
    let proxy = Proxy::start(&config(""), &upstream).await;
    let got = get(&proxy.url("/events?limit=10")).await;
    assert_eq!(got.json().as_array().expect("list").len(), 10);
    assert_eq!(got.header("etag"), None);
    assert_eq!(got.header("content-md5"), None);
    proxy.stop().await;
}

#[tokio::test]
async fn non_json_is_relayed_when_small_and_refused_when_large_or_configured() {
    let small = Upstream::start(|_| async {
        http::Response::new(crate::support::full("id,status\n1,active\n"))
    })
    .await;
    let proxy = Proxy::start(&config("max_bytes: 1KiB"), &small).await;
    assert_eq!(
        get(&proxy.url("/events")).await.text(),
        "id,status\n1,active\n"
    );
    proxy.stop().await;

    let strict = Proxy::start(&config("max_bytes: 1KiB, on_invalid: reject"), &small).await;
    let problem = get(&strict.url("/events")).await.problem(502);
    assert_eq!(
        problem["type"],
        "urn:pagegate:problem:bad-upstream-response"
    );
    strict.stop().await;

    let large =
        Upstream::start(|_| async { http::Response::new(crate::support::full("x".repeat(5000))) })
            .await;
    let proxy = Proxy::start(&config("max_bytes: 1KiB"), &large).await;
    let problem = get(&proxy.url("/events")).await.problem(502);
    assert!(
        problem["detail"]
            .as_str()
            .expect("detail")
            .contains("not JSON and exceeds")
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_second_list_under_the_items_key_is_never_relayed_as_a_page() {
    // Clients read the last of two `data` members: the 2,000 items nobody counted.
    let body = format!(
        "{{\"data\":[1,2,3],\"data\":[{}]}}",
        vec!["7"; 2000].join(",")
    );
    let twice = Upstream::start(move |_| {
        let body = body.clone();
        async move { crate::support::json_response(body) }
    })
    .await;
    let strict = config("items: /data, max_items: 10, on_invalid: reject");
    let proxy = Proxy::start(&strict, &twice).await;
    let problem = get(&proxy.url("/events")).await.problem(502);
    assert_eq!(
        problem["type"],
        "urn:pagegate:problem:bad-upstream-response"
    );
    proxy.stop().await;
    // Refused with `on_invalid: pass` too, and at any size: it is JSON, with a list nobody
    // counted.
    let proxy = Proxy::start(&config("items: /data, max_items: 10"), &twice).await;
    let problem = get(&proxy.url("/events")).await.problem(502);
    assert_eq!(
        problem["type"],
        "urn:pagegate:problem:bad-upstream-response"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn error_responses_pass_through_untouched() {
    // A 503 whose body is a list twice `max_limit` long: a success would be cut to 1,000
    // items; an error is not a page and passes whole.
    let items: Vec<Value> = (0..2000).map(|id| serde_json::json!({"id": id})).collect();
    let body = Value::from(items).to_string();
    let upstream = Upstream::start(move |_| {
        let body = body.clone();
        async move {
            let mut response = crate::support::json_response(body);
            *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
            response
        }
    })
    .await;
    let proxy = Proxy::start(&config(""), &upstream).await;
    let got = get(&proxy.url("/events")).await;
    assert_eq!(got.status, 503);
    assert_eq!(got.header("pagegate-truncated"), None);
    let relayed = got.json();
    assert_eq!(relayed.as_array().map(Vec::len), Some(2000), "{relayed}");
    proxy.stop().await;
}

#[tokio::test]
async fn lists_clients_would_read_are_counted_or_refused_never_relayed_raw() {
    // A byte order mark (PHP files saved with one, .NET's UTF-8 writers): clients skip it,
    // so the list behind it is counted and cut like any other.
    let items: Vec<Value> = (0..2000).map(|id| serde_json::json!({"id": id})).collect();
    let mut marked = b"\xEF\xBB\xBF".to_vec();
    marked.extend_from_slice(Value::from(items).to_string().as_bytes());
    let upstream = Upstream::start(move |_| {
        let body = marked.clone();
        async move { crate::support::json_response(body) }
    })
    .await;
    let proxy = Proxy::start(&config(""), &upstream).await;
    let got = get(&proxy.url("/events")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("pagegate-truncated"), Some("items"));
    let page: Value = serde_json::from_slice(&got.body[3..]).expect("json after the mark");
    assert_eq!(page.as_array().map(Vec::len), Some(100));
    proxy.stop().await;
    // `NaN` (Python's json and Django's JsonResponse write it, Python reads it): once the
    // list has opened, what the scanner cannot read is refused, not relayed uncounted.
    let body = format!("[{{\"v\":NaN}},{}]", vec!["{}"; 2000].join(","));
    let upstream = Upstream::start(move |_| {
        let body = body.clone();
        async move { crate::support::json_response(body) }
    })
    .await;
    let proxy = Proxy::start(&config(""), &upstream).await;
    let problem = get(&proxy.url("/events")).await.problem(502);
    assert_eq!(
        problem["type"],
        "urn:pagegate:problem:bad-upstream-response"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn an_item_larger_than_max_bytes_is_a_502() {
    let body = format!("[{{\"blob\":\"{}\"}}]", "x".repeat(4096));
    let upstream = Upstream::start(move |_| {
        let body = body.clone();
        async move { crate::support::json_response(body) }
    })
    .await;
    let proxy = Proxy::start(&config("max_bytes: 1KiB"), &upstream).await;
    let problem = get(&proxy.url("/events")).await.problem(502);
    assert!(
        problem["detail"]
            .as_str()
            .expect("detail")
            .contains("not one whole item of the backend's list fits")
    );
    let _: Value = problem;
    proxy.stop().await;
}

#[tokio::test]
async fn pages_beyond_max_held_bytes_wait_then_get_a_503() {
    // The first page never completes, so it keeps its reservation of the whole budget.
    let upstream = Upstream::start(|req: http::Request<hyper::body::Incoming>| async move {
        if req.uri().query().unwrap_or("").contains("stall") {
            let frames = futures_util::stream::unfold(0u8, |step| async move {
                if step == 0 {
                    return Some((
                        Ok::<_, pagegate::BoxError>(http_body::Frame::data(Bytes::from_static(
                            b"[1,",
                        ))),
                        1,
                    ));
                }
                tokio::time::sleep(Duration::from_secs(30)).await;
                None
            });
            return http::Response::new(http_body_util::StreamBody::new(frames).boxed());
        }
        crate::support::json_response("[1,2]")
    })
    .await;
    let yaml = format!("max_held_bytes: 1MiB\n{}", config("max_bytes: 1MiB"));
    let proxy = Proxy::start(&yaml, &upstream).await;
    let url = proxy.url("/events?stall=1");
    let stalled = tokio::spawn(async move { get(&url).await });
    while upstream.seen().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let got = get(&proxy.url("/events")).await;
    let problem = got.problem(503);
    assert_eq!(problem["type"], "urn:pagegate:problem:overloaded");
    assert_eq!(got.header("retry-after"), Some("1"));
    // The page is reserved once its head arrives; the refused one was dropped unread.
    assert_eq!(upstream.seen().len(), 2);
    stalled.abort();
    // Once the stalled client is gone its reservation is released.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(get(&proxy.url("/events")).await.text(), "[1,2]");
    proxy.stop().await;
}

#[tokio::test]
async fn cuts_order_violations_and_answers_are_counted_in_metrics() {
    let upstream = Upstream::start(|req: http::Request<hyper::body::Incoming>| async move {
        if req.uri().path() == "/sorted" {
            return crate::support::json_response(r#"[{"id":2},{"id":1}]"#);
        }
        crate::support::json_response("[1,2,3,4,5]")
    })
    .await;
    let yaml = "
admin: {listen: 127.0.0.1:0}
upstreams: {app: {url: '{upstream}'}}
cursors: {keys: [{id: 1, secret: 0123456789abcdef0123456789abcdef}]}
routes:
  - {name: events, path: /events, methods: [GET], upstream: app, list: {}}
  - name: sorted
    path: /sorted
    methods: [GET]
    upstream: app
    list: {keyset: {keys: [{field: /id, param: id_gt}]}}
";
    let proxy = Proxy::start(yaml, &upstream).await;
    assert_eq!(
        get(&proxy.url("/events?limit=2"))
            .await
            .header("pagegate-truncated"),
        Some("items")
    );
    get(&proxy.url("/sorted")).await.problem(502);
    let metrics = proxy.admin.expect("metrics listener");
    let text = get(&format!("http://{metrics}/metrics")).await.text();
    for line in [
        "pagegate_list_cuts_total{route=\"events\",reason=\"items\"} 1",
        "pagegate_order_violations_total{route=\"sorted\"} 1",
        "pagegate_requests_total{route=\"events\",status=\"200\"} 1",
        "pagegate_requests_total{route=\"sorted\",status=\"502\"} 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
    proxy.stop().await;
}

#[tokio::test]
async fn a_complete_page_is_relayed_while_the_backend_trickles_whitespace() {
    // The document is whole after the first frame; then a space every 100 ms for a minute.
    let upstream = Upstream::start(|_| async {
        let frames = futures_util::stream::unfold(0u32, |n| async move {
            let data = match n {
                0 => Bytes::from_static(br#"[{"id":1}]"#),
                600 => return None,
                _ => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Bytes::from_static(b" ")
                }
            };
            Some((
                Ok::<_, pagegate::BoxError>(http_body::Frame::data(data)),
                n + 1,
            ))
        });
        let mut response = http::Response::new(http_body_util::StreamBody::new(frames).boxed());
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        response
    })
    .await;
    let proxy = Proxy::start(&config("max_items: 10"), &upstream).await;
    let got = tokio::time::timeout(Duration::from_secs(10), get(&proxy.url("/events")))
        .await
        .expect("the page came before the backend's body ended");
    assert_eq!(got.status, 200);
    assert_eq!(got.json(), serde_json::json!([{"id": 1}]));
    proxy.stop().await;
}

#[tokio::test]
async fn a_backend_that_compresses_all_the_same_is_refused_not_relayed_uncounted() {
    // 5,000 items gzipped: a few KiB on the wire, far more items than the page allows.
    let items: Vec<Value> = (0..5000).map(|id| serde_json::json!({"id": id})).collect();
    let json = serde_json::to_vec(&items).expect("json");
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gzip, &json).expect("gzip");
    let gzipped = Bytes::from(gzip.finish().expect("gzip"));
    let upstream = Upstream::start(move |_| {
        let gzipped = gzipped.clone();
        async move {
            let mut response = http::Response::new(crate::support::full(gzipped));
            response
                .headers_mut()
                .insert("content-encoding", http::HeaderValue::from_static("gzip"));
            response
        }
    })
    .await;
    let proxy = Proxy::start(&config("max_bytes: 1MiB"), &upstream).await;
    let got = get(&proxy.url("/events")).await;
    let problem = got.problem(502);
    assert_eq!(
        problem["type"],
        "urn:pagegate:problem:bad-upstream-response"
    );
    assert!(
        problem["detail"]
            .as_str()
            .expect("detail")
            .contains("list response is compressed"),
        "{problem}"
    );
    let seen = upstream.last();
    assert_eq!(
        seen.headers.get("accept-encoding").map(|v| v.as_bytes()),
        Some(&b"identity"[..]),
        "the backend was asked for identity"
    );
    proxy.stop().await;

    // `Content-Encoding: identity` is no compression: the page is guarded as usual.
    let plain = Upstream::start(|_| async {
        let mut response = http::Response::new(crate::support::full("[{\"id\":1},{\"id\":2}]"));
        response.headers_mut().insert(
            "content-encoding",
            http::HeaderValue::from_static("identity"),
        );
        response
    })
    .await;
    let proxy = Proxy::start(&config("max_bytes: 1MiB"), &plain).await;
    let got = get(&proxy.url("/events")).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.text(), "[{\"id\":1},{\"id\":2}]");
    proxy.stop().await;
}
