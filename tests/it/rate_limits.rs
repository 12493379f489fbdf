//! Rate and concurrency limits through a real pagegate: bursts then 429 with `Retry-After` and
//! the `RateLimit` fields and nothing forwarded, client keys (header, trusted and untrusted
//! `X-Forwarded-For`), slots held for a whole streamed export and freed on completion and on
//! abort, the queue, report-only, and limiter state kept across a reload.

use std::time::{Duration, Instant};

use crate::support::{Got, Proxy, Upstream, json_response};
use bytes::Bytes;
use futures_util::StreamExt as _;
use http_body_util::BodyExt;

/// `{upstream}` with `limits` on route `/export` and a default route that passes.
fn yaml(settings: &str, limits: &str) -> String {
    format!(
        "{settings}
admin: {{listen: 127.0.0.1:0}}
default: {{action: pass, upstream: app}}
upstreams: {{app: {{url: '{{upstream}}'}}}}
routes:
  - {{name: export, path: /export, upstream: app, limits: {limits}}}
"
    )
}

async fn get_as(proxy: &Proxy, path: &str, headers: &[(&str, &str)]) -> Got {
    let mut request = http::Request::get(proxy.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    crate::support::send(
        request
            .body(crate::support::full(Bytes::new()))
            .expect("request"),
    )
    .await
}

#[tokio::test]
async fn a_burst_passes_then_429_with_retry_after_and_the_fields_and_nothing_forwarded() {
    let upstream = Upstream::json("[]").await;
    let proxy = Proxy::start(
        &yaml("", "{rate: {per_client: {requests: 3, per: 1m}}}"),
        &upstream,
    )
    .await;
    for left in [2, 1, 0] {
        let got = crate::support::get(&proxy.url("/export")).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.header("ratelimit-policy"), Some("\"client\";q=3;w=60"));
        let state = got
            .header("ratelimit")
            .expect("RateLimit on a passing answer");
        assert!(
            state.starts_with(&format!("\"client\";r={left};t=")),
            "{state}"
        );
    }
    let got = crate::support::get(&proxy.url("/export")).await;
    let problem = got.problem(429);
    assert_eq!(problem["type"], "urn:pagegate:problem:rate-limited");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("3 per 1m")),
        "{problem}"
    );
    let retry = got.retry_after();
    assert!(
        (19..=20).contains(&retry),
        "one request every 20 s: {retry}"
    );
    assert_eq!(got.header("ratelimit-policy"), Some("\"client\";q=3;w=60"));
    assert_eq!(
        got.header("ratelimit"),
        Some(format!("\"client\";r=0;t={retry}").as_str())
    );
    assert_eq!(
        upstream.seen().len(),
        3,
        "the refused request never reached the backend"
    );
    // Other routes are not limited.
    assert_eq!(crate::support::get(&proxy.url("/other")).await.status, 200);
    crate::support::assert_metrics(
        &proxy.metrics_text().await,
        &[
            "pagegate_limit_decisions_total{route=\"export\",limit=\"rate_per_client\",decision=\"refused\",tenant_class=\"default\"} 1",
        ],
    );
    proxy.stop().await;
}

#[tokio::test]
async fn two_api_keys_have_two_budgets_and_no_key_means_the_address() {
    let upstream = Upstream::json("[]").await;
    let proxy = Proxy::start(
        &yaml(
            "",
            "{key: header, key_header: X-Api-Key, rate: {per_client: {requests: 2, per: 1h}}}",
        ),
        &upstream,
    )
    .await;
    for key in ["alpha", "beta"] {
        for _ in 0..2 {
            assert_eq!(
                get_as(&proxy, "/export", &[("x-api-key", key)])
                    .await
                    .status,
                200
            );
        }
    }
    assert_eq!(
        get_as(&proxy, "/export", &[("x-api-key", "alpha")])
            .await
            .status,
        429
    );
    // No key: the client address's own budget, spent like any other.
    assert_eq!(get_as(&proxy, "/export", &[]).await.status, 200);
    assert_eq!(get_as(&proxy, "/export", &[]).await.status, 200);
    assert_eq!(get_as(&proxy, "/export", &[]).await.status, 429);
    proxy.stop().await;
}

#[tokio::test]
async fn past_max_clients_new_keys_share_one_budget_and_are_counted() {
    let upstream = Upstream::json("[]").await;
    let proxy = Proxy::start(
        &yaml(
            "",
            "{key: header, key_header: X-Api-Key, max_clients: 1000, rate: {per_client: {requests: 2, per: 1h}}}",
        ),
        &upstream,
    )
    .await;
    let status = async |key: &str| keyed(&proxy, key).await;
    for key in 0..1000 {
        assert_eq!(status(&format!("key-{key}")).await, 200);
    }
    // A thousand keys are held: `c` and `d` share one budget of two, never a bypass.
    assert_eq!((status("c").await, status("d").await), (200, 200));
    assert_eq!(status("c").await, 429);
    assert_eq!(
        status("key-7").await,
        200,
        "a held key keeps its own budget"
    );
    crate::support::assert_metrics(
        &proxy.metrics_text().await,
        &["pagegate_limit_overflow_total{route=\"export\"} 3"],
    );
    proxy.stop().await;
}

/// The status of a request to `/export` with `X-Api-Key: key`.
async fn keyed(proxy: &Proxy, key: &str) -> u16 {
    get_as(proxy, "/export", &[("x-api-key", key)])
        .await
        .status
        .as_u16()
}

/// `pagegate_limit_overflow_total` of route `export`.
async fn overflow(proxy: &Proxy) -> u64 {
    let text = proxy.metrics_text().await;
    let line = text
        .lines()
        .find(|l| l.starts_with("pagegate_limit_overflow_total{route=\"export\"}"));
    line.and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn at_max_clients_a_newcomer_has_full_buckets_forgotten_soon() {
    let upstream = Upstream::json("[]").await;
    let limits = "{key: header, key_header: X-Api-Key, max_clients: 1000, rate: {per_client: {requests: 2, per: 1s}}}";
    let proxy = Proxy::start(&yaml("", limits), &upstream).await;
    // Filled well within the 10 s housekeeping timer: 32 requests at a time.
    let fill = futures_util::stream::iter(0..1000)
        .map(|key| {
            let proxy = &proxy;
            async move { keyed(proxy, &format!("key-{key}")).await }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    assert!(fill.iter().all(|&status| status == 200));
    // A second later every bucket is full again. A newcomer shares the overflow bucket and
    // wakes the housekeeping, whose pass (long before its 10 s timer) forgets them.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(keyed(&proxy, "new-0").await, 200);
    assert_eq!(overflow(&proxy).await, 1);
    let send = async |key: String| keyed(&proxy, &key).await;
    crate::support::until_newcomers_are_held(send, async || overflow(&proxy).await, 1).await;
    proxy.stop().await;
}

#[tokio::test]
async fn forwarded_for_tells_clients_apart_only_behind_a_trusted_proxy() {
    let upstream = Upstream::json("[]").await;
    let limits = "{rate: {per_client: {requests: 1, per: 1h}}}";
    // Trusted: two addresses, two budgets; a spoofed left-most hop changes nothing.
    let proxy = Proxy::start(&yaml("trusted_proxies: [127.0.0.1]", limits), &upstream).await;
    let as_client = |xff: &'static str| [("x-forwarded-for", xff)];
    assert_eq!(
        get_as(&proxy, "/export", &as_client("203.0.113.1"))
            .await
            .status,
        200
    );
    assert_eq!(
        get_as(&proxy, "/export", &as_client("203.0.113.2"))
            .await
            .status,
        200
    );
    assert_eq!(
        get_as(&proxy, "/export", &as_client("198.51.100.9, 203.0.113.1"))
            .await
            .status,
        429,
        "the right-most untrusted hop is the client"
    );
    proxy.stop().await;
    // Untrusted: X-Forwarded-For is the client's own words; the peer is the client.
    let proxy = Proxy::start(&yaml("", limits), &upstream).await;
    assert_eq!(
        get_as(&proxy, "/export", &as_client("203.0.113.1"))
            .await
            .status,
        200
    );
    assert_eq!(
        get_as(&proxy, "/export", &as_client("203.0.113.2"))
            .await
            .status,
        429
    );
    proxy.stop().await;
}

/// A backend whose export streams 20 chunks, one every 50 ms (about a second in all).
async fn slow_export() -> Upstream {
    Upstream::start(|_| async {
        let rows =
            crate::support::bodies::slow_rows(20, Duration::from_millis(50), b"row,row,row\n");
        http::Response::new(rows)
    })
    .await
}

#[tokio::test]
async fn an_export_holds_its_slot_to_its_last_byte_and_an_abort_frees_it_at_once() {
    let upstream = slow_export().await;
    let proxy = Proxy::start(&yaml("", "{concurrency: {per_client: 1}}"), &upstream).await;
    let client = crate::support::client();
    let request = || {
        http::Request::get(proxy.url("/export"))
            .body(crate::support::full(Bytes::new()))
            .expect("request")
    };
    // The first export's head has arrived; its body is still streaming.
    let first = client.request(request()).await.expect("first");
    assert_eq!(first.status(), 200);
    let second = crate::support::get(&proxy.url("/export")).await;
    let problem = second.problem(429);
    assert_eq!(problem["type"], "urn:pagegate:problem:concurrency-limited");
    assert_eq!(second.header("retry-after"), Some("5"));
    let started = Instant::now();
    let body = first
        .into_body()
        .collect()
        .await
        .expect("whole export")
        .to_bytes();
    assert_eq!(body.len(), 20 * 12);
    // Completed: the slot is free.
    let third = client.request(request()).await.expect("third");
    assert_eq!(third.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(3));
    // Aborted mid-stream: freed at once, long before the export would have ended.
    drop(third);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let fourth = client.request(request()).await.expect("fourth");
    assert_eq!(fourth.status(), 200, "the aborted export's slot was freed");
    drop(fourth);
    assert_eq!(
        upstream.seen().len(),
        3,
        "the refused export never reached the backend"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_queued_request_is_admitted_when_a_slot_frees_and_refused_when_its_wait_ends() {
    let upstream = slow_export().await;
    let proxy = Proxy::start(
        &yaml("", "{concurrency: {total: 1, queue: 1, queue_timeout: 3s}}"),
        &upstream,
    )
    .await;
    let url = proxy.url("/export");
    // The first export takes about a second; the second waits for it, then streams.
    let first = {
        let url = url.clone();
        tokio::spawn(async move { crate::support::get(&url).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let second = crate::support::get(&url).await;
    assert_eq!(second.status, 200);
    assert!(
        started.elapsed() > Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(first.await.expect("first").status, 200);
    proxy.stop().await;

    // A queue whose wait ends before the slot frees: 503 (the route's total).
    let proxy = Proxy::start(
        &yaml(
            "",
            "{concurrency: {total: 1, queue: 1, queue_timeout: 200ms}}",
        ),
        &upstream,
    )
    .await;
    let url = proxy.url("/export");
    let first = {
        let url = url.clone();
        tokio::spawn(async move { crate::support::get(&url).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let waited = crate::support::get(&url).await;
    waited.problem(503);
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(first.await.expect("first").status, 200);
    proxy.stop().await;
}

#[tokio::test]
async fn report_only_lets_everything_through_and_says_what_would_have_happened() {
    let upstream = Upstream::json("[]").await;
    let proxy = Proxy::start(
        &yaml(
            "",
            "{report_only: true, rate: {per_client: {requests: 1, per: 1h}}}",
        ),
        &upstream,
    )
    .await;
    let first = crate::support::get(&proxy.url("/export")).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("pagegate-would-refuse"), None);
    let second = crate::support::get(&proxy.url("/export")).await;
    assert_eq!(second.status, 200);
    assert_eq!(
        second.header("pagegate-would-refuse"),
        Some("429 rate_per_client")
    );
    assert!(
        second
            .header("ratelimit")
            .is_some_and(|r| r.contains("r=0"))
    );
    assert_eq!(upstream.seen().len(), 2);
    crate::support::assert_metrics(
        &proxy.metrics_text().await,
        &[
            "pagegate_limit_decisions_total{route=\"export\",limit=\"rate_per_client\",decision=\"reported\",tenant_class=\"default\"} 1",
        ],
    );
    proxy.stop().await;
}

#[tokio::test]
async fn the_default_route_is_limited_and_limiter_state_survives_a_reload() {
    let upstream = Upstream::start(|_| async { json_response("[]") }).await;
    let config = |requests: u32| {
        format!(
            "default: {{action: pass, upstream: app, limits: {{rate: {{total: {{requests: {requests}, per: 1h}}}}}}}}
upstreams: {{app: {{url: '{{upstream}}', pool_max_idle: 4}}}}
"
        )
    };
    let proxy = Proxy::start(&config(2), &upstream).await;
    assert_eq!(crate::support::get(&proxy.url("/a")).await.status, 200);
    assert_eq!(crate::support::get(&proxy.url("/b")).await.status, 200);
    assert_eq!(crate::support::get(&proxy.url("/c")).await.status, 429);
    // The same limits in a new generation (another upstream setting changed): still spent.
    let reload = config(2).replace("pool_max_idle: 4", "pool_max_idle: 8");
    proxy
        .reload(&reload, &upstream.url())
        .await
        .expect("reload");
    assert_eq!(crate::support::get(&proxy.url("/d")).await.status, 429);
    // Changed limits: new limiters.
    proxy
        .reload(&config(3), &upstream.url())
        .await
        .expect("reload");
    assert_eq!(crate::support::get(&proxy.url("/e")).await.status, 200);
    proxy.stop().await;
}

#[tokio::test]
async fn one_clients_waiters_cannot_fill_the_queue_another_client_waits_in() {
    let upstream = slow_export().await;
    let proxy = Proxy::start(
        &yaml(
            "",
            "{key: header, key_header: X-Client, concurrency: {per_client: 1, total: 2, queue: 2, queue_timeout: 5s}}",
        ),
        &upstream,
    )
    .await;
    let spawn_as = |client: &'static str| {
        let url = proxy.url("/export");
        tokio::spawn(async move {
            let request = http::Request::get(url)
                .header("x-client", client)
                .body(crate::support::full(Bytes::new()))
                .expect("request");
            crate::support::send(request).await
        })
    };
    // Both slots taken, by clients a and c (each export streams for about a second).
    let a = spawn_as("a");
    let c = spawn_as("c");
    tokio::time::sleep(Duration::from_millis(150)).await;
    // a waits once more (its share of the queue), then is over its own limit at once.
    let a_waits = spawn_as("a");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let a_again = spawn_as("a").await.expect("a again");
    assert_eq!(
        a_again.problem(429)["type"],
        "urn:pagegate:problem:concurrency-limited"
    );
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "refused at once"
    );
    // b still finds a place and is served when a slot frees.
    let b = spawn_as("b").await.expect("b");
    assert_eq!(b.status, 200, "{}", b.text());
    for task in [a, c, a_waits] {
        assert_eq!(task.await.expect("task").status, 200);
    }
    proxy.stop().await;
}

/// How many of `n` requests, each with its own `X-Api-Key`, pass `path` from one address.
async fn rotating(proxy: &Proxy, path: &str, n: usize) -> usize {
    let mut passed = 0;
    for i in 0..n {
        let got = get_as(proxy, path, &[("x-api-key", &format!("key-{i}"))]).await;
        match got.status.as_u16() {
            200 => passed += 1,
            429 => {
                let problem = got.problem(429);
                assert!(
                    problem["detail"]
                        .as_str()
                        .is_some_and(|d| d.contains("from this address")),
                    "{problem}"
                );
            }
            other => panic!("{other}: {}", got.text()),
        }
    }
    passed
}

#[tokio::test]
async fn rotating_the_header_from_one_address_gains_at_most_the_address_rate() {
    let upstream = Upstream::json("[]").await;
    let proxy = Proxy::start(
        &yaml(
            "",
            "{key: header_and_client, key_header: X-Api-Key, rate: {per_client: {requests: 5, per: 1h}, per_address: {requests: 8, per: 1h}}}",
        ),
        &upstream,
    )
    .await;
    assert_eq!(rotating(&proxy, "/export", 15).await, 8);
    let got = get_as(&proxy, "/export", &[("x-api-key", "another")]).await;
    assert_eq!(
        got.header("ratelimit-policy"),
        Some("\"client\";q=5;w=3600, \"address\";q=8;w=3600")
    );
    proxy.stop().await;
    // Without `per_address`: four times the client's rate.
    let proxy = Proxy::start(
        &yaml(
            "",
            "{key: header_and_client, key_header: X-Api-Key, rate: {per_client: {requests: 5, per: 1h}}}",
        ),
        &upstream,
    )
    .await;
    assert_eq!(rotating(&proxy, "/export", 30).await, 20);
    proxy.stop().await;
}
