//! The gauges of what is open and the counters added for operators, scraped from a real
//! pagegate after scripted traffic: connections and requests in flight during a long answer,
//! request bytes of an upload, tunnels while a WebSocket lives, the process's own series, and on
//! a table route its exported rows, its pool and its refused cursors.

use std::time::{Duration, Instant};

use crate::support::postgres::Postgres;
use crate::support::tls::Ca;
use crate::support::{Proxy, Upstream, full, get, scratch_dir, send};
use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;

/// The value of the series written exactly as `series` (name and labels), if present.
pub(crate) fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?.strip_prefix(' ')?;
        rest.parse().ok()
    })
}

/// Scrapes until `series` has `expected`, for at most 3 s.
async fn until(proxy: &Proxy, series: &str, expected: f64) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let text = proxy.metrics_text().await;
        if value(&text, series) == Some(expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never became {expected}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const YAML: &str = "
admin: {listen: 127.0.0.1:0}
upstreams: {app: {url: '{upstream}'}}
routes:
  - {name: slow, path: /slow, upstream: app}
  - {name: upload, path: /upload, upstream: app}
";

#[tokio::test]
async fn connections_streams_and_request_bytes_follow_traffic() {
    let upstream = Upstream::start(|req| async move {
        if req.uri().path() == "/slow" {
            // 20 rows, one every 50 ms: a second in flight.
            let body = crate::support::bodies::slow_rows(20, Duration::from_millis(50), b"row\n");
            http::Response::new(body)
        } else {
            http::Response::new(full(Bytes::from_static(b"ok")))
        }
    })
    .await;
    let proxy = Proxy::start(YAML, &upstream).await;
    until(&proxy, "pagegate_open_connections", 0.0).await;
    let slow = proxy.url("/slow");
    let streaming = tokio::spawn(async move {
        let request = http::Request::get(slow)
            .body(full(Bytes::new()))
            .expect("request");
        let response = crate::support::client()
            .request(request)
            .await
            .expect("head");
        response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes().len())
    });
    until(&proxy, "pagegate_open_streams", 1.0).await;
    until(&proxy, "pagegate_open_connections", 1.0).await;
    assert_eq!(streaming.await.expect("task").expect("body"), 80);
    until(&proxy, "pagegate_open_streams", 0.0).await;

    let upload = http::Request::post(proxy.url("/upload"))
        .body(full(Bytes::from(vec![b'x'; 10_000])))
        .expect("request");
    assert_eq!(send(upload).await.status, 200);
    let text = proxy.metrics_text().await;
    assert_eq!(
        value(&text, "pagegate_request_bytes_total{route=\"upload\"}"),
        Some(10_000.0),
        "{text}"
    );
    // The process's own series, under their standard names.
    for series in ["process_resident_memory_bytes", "process_open_fds"] {
        let n = value(&text, series).unwrap_or_else(|| panic!("{series} missing:\n{text}"));
        assert!(n > 0.0, "{series} {n}");
    }
    assert!(
        value(&text, "process_cpu_seconds_total").is_some(),
        "{text}"
    );
    let started = value(&text, "process_start_time_seconds").expect("start time");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!(started <= now + 1.0 && started > now - 3600.0, "{started}");
    proxy.stop().await;
}

#[tokio::test]
async fn a_websocket_is_an_open_tunnel_while_it_lives() {
    let backend = crate::upgrades::echo_backend().await;
    let yaml = "
admin: {listen: 127.0.0.1:0}
upstreams: {app: {url: '{upstream}', idle_timeout: 10s}}
routes:
  - {name: chat, path: /chat, upstream: app}
";
    let proxy = Proxy::start_url(yaml, &format!("http://{backend}")).await;
    let (mut stream, head) = crate::upgrades::upgrade(proxy.addr, "/chat").await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    until(&proxy, "pagegate_open_tunnels{upstream=\"app\"}", 1.0).await;
    stream.shutdown().await.expect("shutdown");
    drop(stream);
    until(&proxy, "pagegate_open_tunnels{upstream=\"app\"}", 0.0).await;
    proxy.stop().await;
}

#[tokio::test]
async fn a_table_route_counts_exported_rows_refused_cursors_and_its_pool() {
    let pg = Postgres::start();
    let t = pg.name("counted");
    pg.execute(&format!(
        "CREATE TABLE {t} (id bigint PRIMARY KEY, note text NOT NULL);
         INSERT INTO {t} SELECT g, 'note ' || g FROM generate_series(1, 250) g;"
    ))
    .await;
    let yaml = format!(
        "admin: {{listen: 127.0.0.1:0}}
cursors: {{keys: [{{id: 1, secret: 0123456789abcdef0123456789abcdef}}]}}
postgres: {{main: {{url: '{}', pool_size: 3}}}}
routes:
  - {{name: db, path: /db, table: {{database: main, name: {t}, columns: [id, note], key: [id], export: {{chunk_rows: 100}}}}}}
",
        pg.url
    );
    let proxy = Proxy::start_url(&yaml, "http://127.0.0.1:9").await;
    let export = get(&proxy.url("/db/export")).await;
    assert_eq!(export.status, 200);
    assert_eq!(export.text().lines().count(), 251, "a header and 250 rows");
    for cursor in ["not-a-cursor!", "AAAA"] {
        assert_eq!(
            get(&proxy.url(&format!("/db?cursor={cursor}")))
                .await
                .status,
            400
        );
    }
    let text = proxy.metrics_text().await;
    for (series, expected) in [
        ("pagegate_export_rows_total{route=\"db\"}", 250.0),
        ("pagegate_export_chunks_cut_total{route=\"db\"}", 0.0),
        (
            "pagegate_cursor_failures_total{route=\"db\",reason=\"not_base64\"}",
            1.0,
        ),
        (
            "pagegate_cursor_failures_total{route=\"db\",reason=\"unsupported_version\"}",
            1.0,
        ),
        (
            "pagegate_database_pool_max_connections{database=\"main\",pool=\"primary\"}",
            3.0,
        ),
        (
            "pagegate_database_pool_waiting{database=\"main\",pool=\"primary\"}",
            0.0,
        ),
    ] {
        assert_eq!(value(&text, series), Some(expected), "{series}:\n{text}");
    }
    let idle =
        "pagegate_database_pool_connections{database=\"main\",pool=\"primary\",state=\"idle\"}";
    let idle = value(&text, idle).unwrap_or_else(|| panic!("{idle} missing:\n{text}"));
    assert!(
        (1.0..=3.0).contains(&idle),
        "pooled connections stay open: {idle}"
    );
    proxy.stop().await;
}

/// The metric names in the dashboard's queries, as written (with `_total`, `_bucket`, …).
fn dashboard_names() -> std::collections::BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/pagegate.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("dashboard")).expect("json");
    let mut names = std::collections::BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            let mut rest = expr;
            while let Some(at) = rest.find("pagegate_").or_else(|| rest.find("process_")) {
                let tail = &rest[at..];
                let end = tail
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(tail.len());
                names.insert(tail[..end].to_owned());
                rest = &tail[end..];
            }
        }
    }
    names
}

#[tokio::test]
async fn every_metric_the_dashboard_and_the_docs_name_has_samples_after_traffic() {
    let pg = Postgres::start();
    let t = pg.name("dashboard");
    pg.execute(&format!(
        "CREATE TABLE {t} (id bigint PRIMARY KEY);
         INSERT INTO {t} SELECT g FROM generate_series(1, 10) g;"
    ))
    .await;
    let upstream = Upstream::json("[1,2,3]").await;
    // An https upstream with a client certificate (its expiry is a metric), never reached.
    let dir = scratch_dir("metrics-tls");
    let ca = Ca::new("metrics CA");
    let client = ca.issue(&["pagegate"], &dir, "client");
    let public_key = dir.join("jwt.pub.pem");
    std::fs::write(&public_key, crate::support::jwt::RSA_PUBLIC_PEM).expect("key file");
    let yaml = format!(
        "admin: {{listen: 127.0.0.1:0}}
identities: {{api: {{algorithms: [RS256], issuer: i, audience: a, public_key_file: '{}'}}}}
cursors: {{keys: [{{id: 1, secret: 0123456789abcdef0123456789abcdef}}]}}
postgres: {{main: {{url: '{}'}}}}
upstreams:
  app: {{url: '{{upstream}}'}}
  gone: {{url: 'http://127.0.0.1:9'}}
  secure: {{url: 'https://127.0.0.1:9', tls: {{ca_file: '{}', cert_file: '{}', key_file: '{}'}}}}
routes:
  - {{name: events, path: /events, methods: [GET], upstream: app, list: {{max_items: 2}}}}
  - {{name: down, path: /down, upstream: gone}}
  - {{name: once, path: /once, upstream: app, limits: {{rate: {{per_client: {{requests: 1, per: 1m}}}}}}}}
  - {{name: db, path: /db, table: {{database: main, name: {t}, columns: [id], key: [id]}}}}
  - {{name: watched, path: /watched, upstream: app, list: {{report_only: true}}}}
  - {{name: who, path: /who, upstream: app, limits: {{key: {{jwt: api, claim: sub, anonymous: client}}, rate: {{per_client: {{requests: 9, per: 1m}}}}}}}}
",
        public_key.display(),
        pg.url,
        ca.write(&dir, "ca.pem").display(),
        client.cert.display(),
        client.key.display(),
    );
    let proxy = Proxy::start(&yaml, &upstream).await;
    for path in [
        "/events",
        "/down",
        "/once",
        "/once",
        "/db/export",
        "/db?cursor=x!",
        "/watched?limit=100000",
        "/who",
    ] {
        get(&proxy.url(path)).await;
    }
    let upload = http::Request::post(proxy.url("/events")).body(full(Bytes::from_static(b"{}")));
    send(upload.expect("request")).await;
    proxy.reload(&yaml, &upstream.url()).await.expect("reload");
    let admin = proxy.admin.expect("admin");
    get(&format!("http://{admin}/ready")).await;
    let text = proxy.metrics_text().await;
    let has_samples = |name: &str| {
        text.lines().any(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with([' ', '{']))
        })
    };
    let names = dashboard_names();
    assert!(names.len() > 20, "{names:?}");
    for name in &names {
        assert!(
            has_samples(name),
            "the dashboard's {name} has no samples:\n{text}"
        );
    }
    documented_both_ways(&text);
    proxy.stop().await;
}

/// Every family `text` (a scrape) exposes is in docs/operations.md, and every metric the doc's
/// tables list is exposed.
fn documented_both_ways(text: &str) {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
        .expect("docs");
    for family in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let (name, kind) = family.split_once(' ').expect("a type line");
        let sample = if kind == "counter" {
            format!("{name}_total")
        } else {
            name.to_owned()
        };
        assert!(
            docs.contains(&format!("`{sample}`")),
            "{sample} is not in docs/operations.md"
        );
    }
    // And every metric the docs' tables list is exposed.
    let types: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split_once(' '))
        .map(|(name, _)| name)
        .collect();
    // Every name in a row's first cell (one row may list several, as the process's do).
    let listed: Vec<String> = docs
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split('|').next())
        .flat_map(|cell| {
            format!("`{cell}")
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|name| name.starts_with("pagegate_") || name.starts_with("process_"))
        .collect();
    assert!(listed.len() > 20, "{listed:?}");
    assert!(listed.iter().any(|n| n == "process_threads"), "{listed:?}");
    for name in &listed {
        let family = name.strip_suffix("_total").unwrap_or(name);
        assert!(
            types.contains(&family),
            "docs/operations.md lists {name}, which /metrics does not expose"
        );
    }
}
