//! `cost` against a real Envoy rate-limit service (the `rls_server` example's, run by the
//! test): a request's `cost.request` is its `hits_addend`, and an answer's bytes or an
//! export's rows are charged when it ends (pages cost none), so the client's later requests
//! are refused once the service counts it over.

use std::time::Duration;

use crate::support::rls::RlsServer;
use crate::support::{Got, Proxy, Upstream, get_with};

/// Limitador's limits of the cost tests: 1000 hits a minute per client of route `bytes`,
/// 5000 of route `long`, 10⁹ of route `many`, 400 of route `rows`.
const COST_LIMITS: &str = r#"[
  {"namespace": "costs", "max_value": 1000, "seconds": 60,
   "conditions": ["descriptors[0].route == 'bytes'"], "variables": ["descriptors[0].client"]},
  {"namespace": "costs", "max_value": 5000, "seconds": 60,
   "conditions": ["descriptors[0].route == 'long'"], "variables": ["descriptors[0].client"]},
  {"namespace": "costs", "max_value": 1000000000, "seconds": 60,
   "conditions": ["descriptors[0].route == 'many'"], "variables": ["descriptors[0].client"]},
  {"namespace": "costs", "max_value": 400, "seconds": 60,
   "conditions": ["descriptors[0].route == 'rows'"], "variables": ["descriptors[0].client"]}
]"#;

/// What the service's answer says is left (`r=` of `RateLimit`).
fn remaining(got: &Got) -> i64 {
    let state = got.header("ratelimit").expect("RateLimit");
    let r = state.split(";r=").nth(1).and_then(|s| s.split(';').next());
    r.and_then(|r| r.parse().ok()).expect("r=")
}

/// Asks `path` until `done` holds of an answer (the cost of the answer before is sent when it
/// ends, a moment after the client has it), at most 40 times.
async fn until(proxy: &Proxy, path: &str, done: impl Fn(&Got) -> bool) -> Got {
    for _ in 0..40 {
        let got = get_with(proxy, path, &[]).await;
        if done(&got) {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{path}: never as expected");
}

#[tokio::test]
async fn an_answers_bytes_are_charged_to_the_service_when_it_ends() {
    let rls = RlsServer::start(COST_LIMITS).await;
    let body: &'static str = Box::leak(format!("\"{}\"", "x".repeat(598)).into_boxed_str());
    let upstream = Upstream::json(body).await;
    let yaml = format!(
        "rate_limit_service: {{address: '{}', domain: costs, timeout: 500ms}}
upstreams: {{app: {{url: '{{upstream}}'}}}}
routes:
  - {{name: bytes, path: /bytes, upstream: app, limits: {{store: envoy_rls, cost: {{request: 10, response: bytes}}}}}}
  - name: peek
    path: /peek
    upstream: app
    limits: {{store: envoy_rls, descriptors: [{{key: route, value: 'literal:bytes'}}, {{key: client}}]}}
",
        rls.url()
    );
    let proxy = Proxy::start(&yaml, &upstream).await;
    let first = get_with(&proxy, "/bytes", &[]).await;
    assert_eq!((first.status.as_u16(), first.body.len()), (200, 600));
    assert_eq!(remaining(&first), 990, "the request costs its cost.request");
    // Its 600 bytes are charged once it has ended: 1000 - 10 - 600 - this peek.
    let peek = until(&proxy, "/peek", |got| remaining(got) <= 389).await;
    assert!(remaining(&peek) >= 389 - 40, "charged once");
    // The second answer is let on (about 600 of 1000 are spent), and its bytes take the
    // client over the limit: its next request is refused.
    assert_eq!(get_with(&proxy, "/bytes", &[]).await.status, 200);
    let refused = until(&proxy, "/peek", |got| got.status == 429).await;
    assert_eq!(
        refused.problem(429)["type"],
        "urn:pagegate:problem:rate-limited"
    );
    get_with(&proxy, "/bytes", &[]).await.problem(429);
    proxy.stop().await;
}

#[tokio::test]
async fn a_long_answer_is_charged_while_it_streams() {
    use http_body_util::BodyExt;
    let rls = RlsServer::start(COST_LIMITS).await;
    // `/slow`: 12 rows of 100 bytes, the first 5 one every 200 ms, the rest once the test
    // releases them, so the answer cannot end before the test has seen its charge.
    const ROW: &[u8; 100] = &[b'x'; 100];
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let gate = std::sync::Arc::clone(&release);
    let upstream = Upstream::start(move |req| {
        let gate = std::sync::Arc::clone(&gate);
        async move {
            if req.uri().path() != "/slow" {
                return crate::support::json_response("[]");
            }
            let rows = futures_util::stream::unfold(0u32, move |n| {
                let gate = std::sync::Arc::clone(&gate);
                async move {
                    match n {
                        12 => return None,
                        5 => gate.notified().await,
                        0..5 => tokio::time::sleep(Duration::from_millis(200)).await,
                        _ => {}
                    }
                    let frame = http_body::Frame::data(bytes::Bytes::from_static(ROW));
                    Some((Ok::<_, pagegate::BoxError>(frame), n + 1))
                }
            });
            http::Response::new(http_body_util::StreamBody::new(rows).boxed())
        }
    })
    .await;
    let yaml = format!(
        "rate_limit_service: {{address: '{}', domain: costs, timeout: 500ms}}
upstreams: {{app: {{url: '{{upstream}}'}}}}
routes:
  - {{name: long, path: /slow, upstream: app, limits: {{store: envoy_rls, cost: {{response: bytes, every: 200ms}}}}}}
  - name: peek
    path: /peek
    upstream: app
    limits: {{store: envoy_rls, descriptors: [{{key: route, value: 'literal:long'}}, {{key: client}}]}}
",
        rls.url()
    );
    let proxy = Proxy::start(&yaml, &upstream).await;
    let mut slow = crate::support::get_head(&proxy.url("/slow"))
        .await
        .into_body();
    let mut read = 0;
    while read < 500 {
        let frame = slow.frame().await.expect("a frame").expect("no error");
        read += frame.data_ref().map_or(0, bytes::Bytes::len);
    }
    // At least 300 of the 500 bytes read are charged while the answer still streams: 5000 -
    // 1 (its request) - 300 - the peeks.
    let mut peeks = 0;
    while remaining(&get_with(&proxy, "/peek", &[]).await) > 5000 - 1 - 300 - (peeks + 1) {
        peeks += 1;
        assert!(peeks < 20, "no bytes charged while the answer streams");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    release.notify_one();
    let mut rest = 0;
    while let Some(frame) = slow.frame().await {
        rest += frame
            .expect("no error")
            .data_ref()
            .map_or(0, bytes::Bytes::len);
    }
    assert_eq!(read + rest, 1200);
    // The rest is charged when it ends, each byte once: the request, its 1200 bytes, the
    // peeks and the last one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let last = remaining(&get_with(&proxy, "/peek", &[]).await);
    assert_eq!(last, 5000 - 1 - 1200 - (peeks + 2));
    proxy.stop().await;
}

#[tokio::test]
async fn many_answers_on_one_http2_connection_are_each_charged_once() {
    use http_body_util::BodyExt;
    let rls = RlsServer::start(COST_LIMITS).await;
    // Each answer: 5 rows of 100 bytes, one every 100 ms, charged every 100 ms.
    let upstream = Upstream::start(|req| async move {
        if req.uri().path() != "/many" {
            return crate::support::json_response("[]");
        }
        http::Response::new(crate::support::bodies::slow_rows(
            5,
            Duration::from_millis(100),
            &[b'y'; 100],
        ))
    })
    .await;
    let yaml = format!(
        "rate_limit_service: {{address: '{}', domain: costs, timeout: 2s}}
upstreams: {{app: {{url: '{{upstream}}'}}}}
routes:
  - {{name: many, path: /many, upstream: app, limits: {{store: envoy_rls, cost: {{response: bytes, every: 100ms}}}}}}
  - name: peek
    path: /peek
    upstream: app
    limits: {{store: envoy_rls, descriptors: [{{key: route, value: 'literal:many'}}, {{key: client}}]}}
",
        rls.url()
    );
    let proxy = Proxy::start(&yaml, &upstream).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let one = async |_| {
        let request = http::Request::get(proxy.url("/many"))
            .body(crate::support::full(bytes::Bytes::new()))
            .expect("request");
        let response = client.request(request).await.expect("an answer");
        assert_eq!(response.version(), http::Version::HTTP_2);
        let body = response.into_body().collect().await.expect("body");
        body.to_bytes().len()
    };
    let lengths = futures_util::future::join_all((0..200).map(one)).await;
    assert!(lengths.iter().all(|&n| n == 500), "{lengths:?}");
    // 200 requests and their 100,000 bytes, each counted once, and the peeks (a hit each).
    for peeks in 1..=40 {
        let left = remaining(&get_with(&proxy, "/peek", &[]).await);
        if left == 1_000_000_000 - 200 - 200 * 500 - peeks {
            proxy.stop().await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the service never counted each byte exactly once");
}

#[tokio::test]
async fn an_exports_rows_are_charged_to_the_service_and_pages_cost_none() {
    let pg = crate::support::postgres::Postgres::start();
    let t = pg.name("rls_rows");
    pg.execute(&format!(
        "CREATE TABLE {t} (id bigint PRIMARY KEY, v text);
         INSERT INTO {t} SELECT g, 'v' || g FROM generate_series(1, 250) g;"
    ))
    .await;
    let rls = RlsServer::start(COST_LIMITS).await;
    let yaml = format!(
        "rate_limit_service: {{address: '{}', domain: costs, timeout: 500ms}}
cursors: {{keys: [{{id: 1, secret: test-secret-test-secret-test-secret-0123}}]}}
postgres: {{main: {{url: '{}'}}}}
routes:
  - name: rows
    path: /rows
    table: {{database: main, name: {t}, columns: [id, v], key: [id], export: {{chunk_rows: 100}}}}
    limits: {{store: envoy_rls, cost: {{response: rows}}}}
",
        rls.url(),
        pg.url
    );
    let proxy = Proxy::start_url(&yaml, "http://127.0.0.1:9").await;
    let export = get_with(&proxy, "/rows/export?format=ndjson", &[]).await;
    assert_eq!(
        (export.status.as_u16(), export.text().lines().count()),
        (200, 250)
    );
    assert_eq!(remaining(&export), 399);
    // 400 - 1 - 250 - this page; a page costs its one hit and no rows.
    let page = until(&proxy, "/rows?limit=5", |got| remaining(got) <= 148).await;
    // Each page costs its hit alone, however long after it the count is read: a charge of
    // its rows sent when it ended would show as a larger drop.
    let mut last = remaining(&page);
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(60)).await;
        let next = remaining(&get_with(&proxy, "/rows?limit=5", &[]).await);
        assert_eq!(last - next, 1, "a page's rows are not charged");
        last = next;
    }
    assert_eq!(get_with(&proxy, "/rows/export", &[]).await.status, 200);
    let refused = until(&proxy, "/rows?limit=5", |got| got.status == 429).await;
    assert_eq!(
        refused.problem(429)["type"],
        "urn:pagegate:problem:rate-limited"
    );
    proxy.stop().await;
}

#[test]
fn a_row_cost_needs_a_table_route_that_exports() {
    let yaml = "rate_limit_service: {address: 'http://127.0.0.1:8081', domain: d}
cursors: {keys: [{id: 1, secret: test-secret-test-secret-test-secret-0123}]}
postgres: {main: {url: 'postgres://u@127.0.0.1/db'}}
routes:
  - {name: t, path: /t, table: {database: main, name: t, columns: [id], key: [id], export: {formats: []}}, limits: {store: envoy_rls, cost: {response: rows}}}
";
    let text = match pagegate::Config::parse("t.yaml", yaml) {
        Ok(_) => panic!("a row cost on a table without exports counts nothing"),
        Err(e) => e.to_string(),
    };
    assert!(
        text.contains("t.yaml:5:") && text.contains("allow exports"),
        "{text}"
    );
}

#[test]
fn cost_mistakes_are_located_with_their_fix() {
    let cases = [
        (
            "{cost: {request: 2}, rate: {per_client: {requests: 1, per: 1s}}}",
            "add `store: envoy_rls`",
        ),
        (
            "{store: envoy_rls, cost: {request: 0}}",
            "what one request adds",
        ),
        (
            "{store: envoy_rls, cost: {response: rows}}",
            "only a table route's exports have",
        ),
        (
            "{store: envoy_rls, cost: {response: bytes, every: 10ms}}",
            "between 100ms and 1h",
        ),
        (
            "{store: envoy_rls, cost: {request: 2, every: 1s}}",
            "add `response: bytes` or `rows`",
        ),
    ];
    for (limits, fix) in cases {
        let yaml = format!(
            "rate_limit_service: {{address: 'http://127.0.0.1:8081', domain: fleet}}
upstreams: {{app: {{url: 'http://127.0.0.1:9'}}}}
routes:
  - name: r
    limits: {limits}
    path: /r
    upstream: app
"
        );
        let text = match pagegate::Config::parse("t.yaml", &yaml) {
            Ok(_) => panic!("expected a problem for {limits}"),
            Err(e) => e.to_string(),
        };
        assert!(
            text.contains("t.yaml:5:") && text.contains(fix),
            "{limits}:\n{text}\nshould say {fix}"
        );
    }
}
