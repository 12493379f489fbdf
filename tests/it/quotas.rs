//! Quotas through a real pagegate: bytes of any answer and rows of table exports (on a real
//! PostgreSQL), spent as the body streams; a finished answer may overdraw, the next is
//! refused 429 with the quota's `RateLimit` fields; with `on_exceed: cut` the answer ends
//! after its last whole chunk with an error (logged `truncated`), and an export resumes with
//! `after` once the quota refills.

use std::time::Duration;

use http_body_util::BodyExt;

use crate::support::postgres::Postgres;
use crate::support::{Proxy, Upstream};

/// A backend answering 40 KiB in five 8 KiB frames.
async fn backend() -> Upstream {
    Upstream::start(|_| async {
        http::Response::new(crate::support::bodies::pattern(40 << 10, 8 << 10))
    })
    .await
}

fn yaml(quota: &str) -> String {
    format!(
        "admin: {{listen: 127.0.0.1:0}}
upstreams: {{app: {{url: '{{upstream}}'}}}}
routes:
  - {{name: files, path: /files, upstream: app, limits: {{quota: {quota}}}}}
"
    )
}

/// Status, and the body's bytes and whether it ended in an error.
async fn fetch(url: &str) -> (u16, usize, bool) {
    let response = crate::support::get_head(url).await;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut bytes = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => bytes += frame.data_ref().map_or(0, bytes::Bytes::len),
            Err(_) => return (status, bytes, true),
        }
    }
    (status, bytes, false)
}

#[tokio::test]
async fn a_byte_quota_lets_an_answer_finish_then_refuses_the_next_with_its_fields() {
    let upstream = backend().await;
    let proxy = Proxy::start(&yaml("{bytes: 64KiB, per: 1h}"), &upstream).await;
    assert_eq!(fetch(&proxy.url("/files")).await, (200, 40 << 10, false));
    // 24 KiB left: the whole answer is sent all the same (on_exceed: finish).
    assert_eq!(fetch(&proxy.url("/files")).await, (200, 40 << 10, false));
    let got = crate::support::get(&proxy.url("/files")).await;
    assert_eq!(
        got.problem(429)["type"],
        "urn:pagegate:problem:quota-exceeded"
    );
    assert_eq!(
        got.header("ratelimit-policy"),
        Some("\"quota\";q=65536;w=3600;qu=\"content-bytes\"")
    );
    // 16 KiB overdrawn, refilled at 64 KiB an hour: back above zero in 901 s.
    assert_eq!(got.retry_after(), 901);
    assert_eq!(got.header("ratelimit"), Some("\"quota\";r=0;t=901"));
    assert_eq!(
        upstream.seen().len(),
        2,
        "the refused request never reached the backend"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_byte_quota_that_cuts_ends_the_answer_with_an_error_logged_truncated() {
    let (captured, _guard) = crate::support::logs::capture();
    let upstream = backend().await;
    let proxy = Proxy::start(&yaml("{bytes: 20KiB, per: 1h, on_exceed: cut}"), &upstream).await;
    // Two frames and half the third are handed on, then the cut: every byte of the quota
    // reaches the client (flushed before the error), never more.
    let (status, bytes, broken) = fetch(&proxy.url("/files")).await;
    assert_eq!((status, broken), (200, true));
    assert_eq!(bytes, 20 << 10);
    assert_eq!(captured.outcome("/files").await, "truncated");
    // The cut spent the rest: the next request waits for the refill.
    crate::support::get(&proxy.url("/files")).await.problem(429);
    crate::support::assert_metrics(
        &proxy.metrics_text().await,
        &[
            "pagegate_limit_decisions_total{route=\"files\",limit=\"quota\",decision=\"cut\",tenant_class=\"default\"} 1",
            "pagegate_limit_decisions_total{route=\"files\",limit=\"quota\",decision=\"refused\",tenant_class=\"default\"} 1",
        ],
    );
    proxy.stop().await;
}

/// The ids of an NDJSON export, and whether it ended in an error.
async fn export_ids(url: &str) -> (Vec<i64>, bool) {
    let response = crate::support::get_head(url).await;
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let (mut text, mut broken) = (Vec::new(), false);
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => text.extend_from_slice(frame.data_ref().map_or(&[][..], |d| &d[..])),
            Err(_) => broken = true,
        }
    }
    let ids = String::from_utf8(text)
        .expect("utf-8")
        .lines()
        .map(|l| {
            let row: serde_json::Value = serde_json::from_str(l).expect("whole records");
            row["id"].as_i64().expect("id")
        })
        .collect();
    (ids, broken)
}

/// A table of 1,000 rows (`id`, `v`) served at `/rows`, exported in chunks of 100 rows,
/// `parallel` at once, under a row quota of 350 every `per` that cuts.
async fn rows_under_quota(pg: &Postgres, table: &str, parallel: u8, per: &str) -> Proxy {
    let t = pg.name(table);
    pg.execute(&format!(
        "CREATE TABLE {t} (id bigint PRIMARY KEY, v text);
         INSERT INTO {t} SELECT g, 'v' || g FROM generate_series(1, 1000) g;"
    ))
    .await;
    let yaml = format!(
        "cursors: {{keys: [{{id: 1, secret: test-secret-test-secret-test-secret-0123}}]}}
postgres: {{main: {{url: '{}'}}}}
routes:
  - name: rows
    path: /rows
    table: {{database: main, name: {t}, columns: [id, v], key: [id], export: {{chunk_rows: 100, parallel: {parallel}}}}}
    limits: {{quota: {{rows: 350, per: {per}, on_exceed: cut}}}}
",
        pg.url
    );
    Proxy::start_url(&yaml, "http://127.0.0.1:9").await
}

#[tokio::test]
async fn a_row_quota_cuts_an_export_after_its_last_whole_chunk_and_after_resumes_it() {
    let pg = Postgres::start();
    let proxy = rows_under_quota(&pg, "quota_rows", 1, "35s").await;
    let (ids, broken) = export_ids(&proxy.url("/rows/export?format=ndjson")).await;
    assert!(broken, "a cut export ends with an error, never a clean end");
    assert_eq!(
        ids,
        (1..=300).collect::<Vec<_>>(),
        "three whole chunks of a hundred"
    );
    // Exports are refused until the quota refills (ten rows a second); pages are not charged.
    let refused = crate::support::get(&proxy.url("/rows/export")).await;
    assert_eq!(
        refused.problem(429)["type"],
        "urn:pagegate:problem:quota-exceeded"
    );
    assert_eq!(
        refused.header("ratelimit-policy"),
        Some("\"quota\";q=350;w=35")
    );
    let page = crate::support::get(&proxy.url("/rows?limit=5")).await;
    assert_eq!(page.status, 200);
    // Ten seconds refill a chunk: the export resumes after its last whole record, gets one
    // chunk, and is cut again before the next.
    tokio::time::sleep(Duration::from_millis(10_100)).await;
    let (ids, broken) = export_ids(&proxy.url("/rows/export?format=ndjson&after=300")).await;
    assert_eq!(
        ids,
        (301..=400).collect::<Vec<_>>(),
        "resumed after the last whole record"
    );
    assert!(broken);
    proxy.stop().await;
}

#[tokio::test]
async fn over_http2_a_cut_resets_the_stream_and_the_connection_goes_on() {
    let upstream = backend().await;
    let proxy = Proxy::start(&yaml("{bytes: 20KiB, per: 1h, on_exceed: cut}"), &upstream).await;
    let tcp = tokio::net::TcpStream::connect(proxy.addr)
        .await
        .expect("connect");
    let (client, connection) = h2::client::handshake(tcp).await.expect("handshake");
    tokio::spawn(connection);
    let mut client = client.ready().await.expect("ready");
    let request = http::Request::get(format!("http://{}/files", proxy.addr))
        .body(())
        .expect("request");
    let (response, _) = client.send_request(request, true).expect("send");
    let response = response.await.expect("head");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut received = 0;
    let error = loop {
        match body.data().await {
            Some(Ok(data)) => {
                received += data.len();
                let _ = body.flow_control().release_capacity(data.len());
            }
            Some(Err(error)) => break error,
            None => panic!("a clean end after {received} bytes"),
        }
    };
    assert_eq!(
        received,
        20 << 10,
        "every byte of the quota, then the reset"
    );
    assert!(error.is_reset(), "{error}");
    // The stream was reset, not the connection: the next request on it is answered (429).
    let mut client = client.ready().await.expect("the connection is still open");
    let request = http::Request::get(format!("http://{}/files", proxy.addr))
        .body(())
        .expect("request");
    let (response, _) = client.send_request(request, true).expect("send");
    assert_eq!(response.await.expect("head").status(), 429);
    proxy.stop().await;
}

#[test]
fn quota_mistakes_are_located_with_their_fix() {
    let cases = [
        (
            "{rows: 1000, per: 1h}",
            "t.yaml:4:",
            "only a table route's exports have: count `bytes` here",
        ),
        (
            "{bytes: 1MiB, rows: 10, per: 1h}",
            "t.yaml:4:",
            "set one of the two",
        ),
        (
            "{bytes: 1MiB, per: 0s}",
            "t.yaml:4:",
            "write a window from 1s to a year",
        ),
        ("{bytes: 10, per: 1h}", "t.yaml:4:", "keep it at least"),
        (
            "{bytes: 1MiB, per: 1h, on_exceed: stop}",
            "t.yaml:4:",
            "unknown variant",
        ),
    ];
    for (quota, at, fix) in cases {
        let yaml = format!(
            "upstreams: {{app: {{url: 'http://127.0.0.1:9'}}}}\nroutes:\n  - name: r\n    limits: {{quota: {quota}}}\n    path: /r\n    upstream: app\n"
        );
        let text = match pagegate::Config::parse("t.yaml", &yaml) {
            Ok(_) => panic!("expected a problem for {quota}"),
            Err(e) => e.to_string(),
        };
        assert!(
            text.contains(at) && text.contains(fix),
            "{quota}:\n{text}\nshould say {at} … {fix}"
        );
    }
}

#[tokio::test]
async fn a_byte_quota_binds_on_a_route_whose_limits_live_in_redis() {
    let redis = crate::support::redis::RedisServer::start();
    let upstream = backend().await;
    let yaml = format!(
        "redis: {{url: '{}', timeout: 500ms}}
upstreams: {{app: {{url: '{{upstream}}'}}}}
routes:
  - {{name: files, path: /files, upstream: app, limits: {{store: redis, rate: {{per_client: {{requests: 100, per: 1m}}}}, quota: {{bytes: 64KiB, per: 1h}}}}}}
",
        redis.url()
    );
    let proxy = Proxy::start(&yaml, &upstream).await;
    for _ in 0..2 {
        assert_eq!(fetch(&proxy.url("/files")).await, (200, 40 << 10, false));
    }
    let got = crate::support::get(&proxy.url("/files")).await;
    assert_eq!(
        got.problem(429)["type"],
        "urn:pagegate:problem:quota-exceeded"
    );
    proxy.stop().await;
}

#[test]
fn a_cutting_row_quota_smaller_than_a_chunk_is_refused() {
    let yaml = "cursors: {keys: [{id: 1, secret: test-secret-test-secret-test-secret-0123}]}
postgres: {main: {url: 'postgres://pagegate@127.0.0.1:9/db'}}
routes:
  - {name: t, path: /t, table: {database: main, name: t, columns: [id], key: [id], export: {chunk_rows: 500}}, limits: {quota: {rows: 100, per: 1h, on_exceed: cut}}}
";
    let text = match pagegate::Config::parse("t.yaml", yaml) {
        Ok(_) => panic!("expected a problem"),
        Err(e) => e.to_string(),
    };
    assert!(
        text.contains("t.yaml:4:") && text.contains("whole chunks of `chunk_rows` (500)"),
        "{text}"
    );
    let finishing = yaml.replace(", on_exceed: cut", "");
    assert!(
        pagegate::Config::parse("t.yaml", &finishing).is_ok(),
        "finish sends every chunk"
    );
}

/// `pagegate_limit_overflow_total` of route `files`.
async fn overflow(proxy: &Proxy) -> u64 {
    let text = proxy.metrics_text().await;
    text.lines()
        .find_map(|l| l.strip_prefix("pagegate_limit_overflow_total{route=\"files\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn at_max_clients_a_quota_newcomer_wakes_the_forgetting_of_full_levels() {
    use futures_util::StreamExt as _;
    // 1 KiB answers, so a thousand keys cost the machine little.
    let upstream = Upstream::start(|_| async {
        http::Response::new(crate::support::bodies::pattern(1 << 10, 1 << 10))
    })
    .await;
    let limits =
        "{key: header, key_header: X-Api-Key, max_clients: 1000, quota: {bytes: 64KiB, per: 1s}}";
    let yaml = yaml("{bytes: 64KiB, per: 1s}").replace(
        "limits: {quota: {bytes: 64KiB, per: 1s}}",
        &format!("limits: {limits}"),
    );
    let proxy = Proxy::start(&yaml, &upstream).await;
    let keyed = async |key: String| {
        let got = crate::support::get_with(&proxy, "/files", &[("x-api-key", key)]).await;
        (got.status.as_u16(), got.body.len())
    };
    // A thousand keys, each with a level of its own, filled well within the 10 s
    // housekeeping timer.
    let fill: Vec<(u16, usize)> = futures_util::stream::iter(0..1000)
        .map(|key| keyed(format!("key-{key}")))
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(fill.iter().all(|&got| got == (200, 1 << 10)));
    assert_eq!(overflow(&proxy).await, 0, "a level for each of the 1,000");
    // A second later every level is full again. A newcomer shares the overflow level and
    // wakes the housekeeping, whose pass (long before its 10 s timer) forgets them, so the
    // newcomers after it get levels of their own.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(keyed("new-0".to_owned()).await.0, 200);
    // Counted at its admission, and at its frame if spent before the pass ran.
    let counted = overflow(&proxy).await;
    assert!(counted >= 1, "the newcomer shared the overflow level");
    let send = async |key: String| keyed(key).await.0;
    crate::support::until_newcomers_are_held(send, async || overflow(&proxy).await, counted).await;
    proxy.stop().await;
}

#[tokio::test]
async fn a_compressed_export_cut_by_its_row_quota_still_ends_after_whole_records() {
    let pg = Postgres::start();
    let proxy = rows_under_quota(&pg, "quota_gzip", 4, "1h").await;
    let request = http::Request::get(proxy.url("/rows/export?format=ndjson"))
        .header("accept-encoding", "gzip")
        .body(crate::support::full(bytes::Bytes::new()))
        .expect("request");
    let response = crate::support::client()
        .request(request)
        .await
        .expect("answered");
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let mut body = response.into_body();
    let (mut gzip, mut broken) = (Vec::new(), false);
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => gzip.extend_from_slice(frame.data_ref().map_or(&[][..], |d| &d[..])),
            Err(_) => broken = true,
        }
    }
    assert!(broken, "a cut export ends with an error, never a clean end");
    // What arrived decodes (the stream is cut, so it has no footer) to whole records.
    let mut decoder = flate2::write::GzDecoder::new(Vec::new());
    std::io::Write::write_all(&mut decoder, &gzip).expect("decodes");
    std::io::Write::flush(&mut decoder).expect("flushes what it decoded");
    let text = String::from_utf8(decoder.get_ref().clone()).expect("utf-8");
    let ids: Vec<i64> = text
        .lines()
        .map(|l| {
            let row: serde_json::Value = serde_json::from_str(l).expect("whole records");
            row["id"].as_i64().expect("id")
        })
        .collect();
    assert_eq!(
        ids,
        (1..=300).collect::<Vec<_>>(),
        "every charged chunk arrived"
    );
    proxy.stop().await;
}
