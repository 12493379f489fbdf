//! The embedded demo, end to end: the naive backend with 1,000,000 rows behind pagegate
//! running config/demo.yaml, checked the way the README tells a user to check it.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::BodyExt;
use pagegate::Config;
use pagegate::Server;
use pagegate::{DEFAULT_ROWS, DEMO_CONFIG, serve_backend};
use tokio::net::TcpListener;

async fn demo() -> (SocketAddr, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let backend = listener.local_addr().expect("addr");
    tokio::spawn(serve_backend(listener, DEFAULT_ROWS));
    let yaml = DEMO_CONFIG
        .replace("listen: 127.0.0.1:8080", "listen: 127.0.0.1:0")
        .replace("listen: 127.0.0.1:9090", "listen: 127.0.0.1:0")
        .replace("http://127.0.0.1:8081", &format!("http://{backend}"));
    let config = Config::parse("demo.yaml", &yaml).expect("demo config");
    let server = Server::bind(config).await.expect("bind proxy");
    let proxy = server.local_addr().expect("addr");
    tokio::spawn(server.run(std::future::pending()));
    (proxy, backend)
}

fn next(got: &crate::support::Got) -> Option<String> {
    let link = got.header("link")?;
    Some(link.strip_prefix('<')?.split_once('>')?.0.to_owned())
}

#[tokio::test]
async fn events_are_capped_clamped_and_deep_offsets_refused() {
    let (proxy, _) = demo().await;
    let got = crate::support::get(&format!("http://{proxy}/events")).await;
    assert_eq!(got.status, 200);
    let items = got.json();
    let items = items.as_array().expect("array");
    assert_eq!(items.len(), 100);
    assert_eq!(items[0]["id"], 1);
    assert_eq!(items[0]["status"], "archived");
    assert_eq!(items[0]["created_at"], "2026-01-01T00:00:03Z");
    assert!(
        next(&got)
            .expect("a next link")
            .starts_with("/events?cursor=")
    );

    let clamped = crate::support::get(&format!("http://{proxy}/events?limit=100000000")).await;
    assert_eq!(clamped.json().as_array().expect("array").len(), 1000);
    assert_eq!(
        clamped.header("pagegate-clamped"),
        Some("limit=1000; requested=100000000")
    );

    let problem = crate::support::get(&format!("http://{proxy}/events?offset=500000"))
        .await
        .problem(400);
    assert_eq!(problem["type"], "urn:pagegate:problem:offset-too-deep");
    assert_eq!(problem["first_page"], "/events");
}

#[tokio::test]
async fn all_rows_can_be_walked_by_following_link_headers() {
    let (proxy, _) = demo().await;
    let mut url = "/events?limit=1000".to_owned();
    let (mut expected, mut pages) = (1u64, 0);
    loop {
        let got = crate::support::get(&format!("http://{proxy}{url}")).await;
        assert_eq!(got.status, 200, "{url}");
        let page = got.json();
        let page = page.as_array().expect("array");
        assert!(!page.is_empty(), "empty page at {url}");
        for item in page {
            assert_eq!(item["id"], expected);
            expected += 1;
        }
        pages += 1;
        match next(&got) {
            Some(link) => url = link,
            None => break,
        }
    }
    assert_eq!(expected - 1, DEFAULT_ROWS, "every row once, in order");
    assert_eq!(pages, 1000, "no empty last page");
}

#[tokio::test]
async fn the_export_streams_every_row_through() {
    let (proxy, _) = demo().await;
    let response = crate::support::client()
        .request(
            http::Request::get(format!("http://{proxy}/events/export"))
                .body(crate::support::full(Bytes::new()))
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(response.headers()["content-type"], "text/csv");
    let mut body = response.into_body();
    let (mut lines, mut last) = (0u64, Bytes::new());
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("frame").into_data() {
            lines += data.iter().filter(|b| **b == b'\n').count() as u64;
            last = data;
        }
    }
    assert_eq!(lines, DEFAULT_ROWS + 1, "header and every row");
    assert!(
        String::from_utf8_lossy(&last)
            .ends_with("1000000,active,2026-02-04T17:20:00Z,0,event number 1000000\n")
    );
}

#[tokio::test]
async fn a_second_concurrent_export_from_one_client_gets_429_while_the_first_finishes() {
    let (proxy, _) = demo().await;
    let url = format!("http://{proxy}/events/export");
    let first = crate::support::client()
        .request(
            http::Request::get(&url)
                .body(crate::support::full(Bytes::new()))
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["ratelimit-policy"], "\"client\";q=5;w=60");
    // The first export is still streaming: the second is refused, and says when to retry.
    let second = crate::support::get(&url).await;
    second.problem(429);
    assert_eq!(second.header("retry-after"), Some("5"));
    assert_eq!(
        second.header("ratelimit-policy"),
        Some("\"client\";q=5;w=60")
    );
    assert!(
        second
            .header("ratelimit")
            .is_some_and(|r| r.starts_with("\"client\";r=3;"))
    );
    // The first finishes whole.
    let body = first
        .into_body()
        .collect()
        .await
        .expect("export")
        .to_bytes();
    let lines = body.iter().filter(|b| **b == b'\n').count() as u64;
    assert_eq!(lines, DEFAULT_ROWS + 1);
}

#[tokio::test]
async fn the_postgres_demo_serves_its_table_as_pages_and_exports() {
    let pg = crate::support::postgres::Postgres::start();
    let rows = pagegate::prepare_demo_table(&pg.url, 5_000)
        .await
        .expect("demo table");
    assert_eq!(rows, 5_000);
    // A second start keeps the table as it is.
    assert_eq!(
        pagegate::prepare_demo_table(&pg.url, 10)
            .await
            .expect("again"),
        5_000
    );
    let yaml = format!("{DEMO_CONFIG}{}", pagegate::demo_postgres_yaml(&pg.url))
        .replace("listen: 127.0.0.1:8080", "listen: 127.0.0.1:0")
        .replace("listen: 127.0.0.1:9090", "listen: 127.0.0.1:0");
    let config = Config::parse("demo.yaml", &yaml).expect("demo config with postgres");
    let server = Server::bind(config).await.expect("bind proxy");
    let proxy = server.local_addr().expect("addr");
    tokio::spawn(server.run(std::future::pending()));
    let page = crate::support::get(&format!(
        "http://{proxy}/db/events?fields=id,status&status=eq.active&limit=3"
    ))
    .await;
    assert_eq!(page.status, 200, "{}", page.text());
    let page = page.json();
    assert_eq!(page["data"].as_array().map(Vec::len), Some(3));
    assert!(page["next_cursor"].is_string());
    let export = crate::support::get(&format!("http://{proxy}/db/events/export?format=csv"))
        .await
        .text();
    assert_eq!(export.lines().count(), 5_001, "a header and every row");
}

#[tokio::test]
async fn the_demo_command_takes_its_three_addresses_from_the_command_line() {
    use crate::support::redis::free_port;
    let (proxy, admin, backend) = (free_port(), free_port(), free_port());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pagegate"))
        .args(["demo", "--rows", "1000"])
        .args(["--listen", &format!("127.0.0.1:{proxy}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
        .args(["--backend-listen", &format!("127.0.0.1:{backend}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the demo");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", proxy))
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the demo did not start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let direct = crate::support::get(&format!("http://127.0.0.1:{backend}/events")).await;
    let proxied = crate::support::get(&format!("http://127.0.0.1:{proxy}/events")).await;
    let ready = crate::support::get(&format!("http://127.0.0.1:{admin}/ready")).await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(direct.status, 200);
    assert_eq!(direct.json().as_array().map(Vec::len), Some(1000));
    assert_eq!(proxied.status, 200, "pagegate reaches the moved backend");
    assert_eq!(ready.status, 200, "{}", ready.text());
}
