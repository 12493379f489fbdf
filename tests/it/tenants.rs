//! Tenant classes through a real pagegate: overrides with per-client limits of their own
//! (matched by a verified claim or a header), exempt service identities, the totals that still
//! bind every class, `tenant_class` on the metrics (never a key), and override buckets shared
//! through a real `redis-server`.

use std::time::Duration;

use serde_json::json;

use crate::support::jwt::{RSA_PUBLIC_PEM, Signer, claims};
use crate::support::redis::RedisServer;
use crate::support::{Got, Proxy, Upstream, get_with, json_response};

/// Route `/orders` keyed by the `sub` of tokens the RSA test key signs, with `limits` added.
/// The config, and the directory of its key file (removed when dropped).
fn yaml(limits: &str, top: &str) -> (String, crate::support::Scratch) {
    let dir = crate::support::scratch_dir("tenants");
    let file = dir.join("key.pem");
    std::fs::write(&file, RSA_PUBLIC_PEM).expect("key file");
    let yaml = format!(
        "{top}admin: {{listen: 127.0.0.1:0}}
identities:
  api: {{algorithms: [RS256], issuer: 'https://issuer.test/', audience: orders, public_key_file: '{}'}}
upstreams: {{app: {{url: '{{upstream}}'}}}}
routes:
  - name: orders
    path: /orders
    upstream: app
    limits: {{key: {{jwt: api, claim: sub}}, {limits}}}
",
        file.display()
    );
    (yaml, dir)
}

fn token(sub: &str, plan: &str) -> String {
    let signed = Signer::rsa().sign(None, &claims(&json!({"sub": sub, "plan": plan})));
    format!("Bearer {signed}")
}

async fn as_client(proxy: &Proxy, bearer: &str) -> Got {
    get_with(proxy, "/orders", &[("authorization", bearer.to_owned())]).await
}

#[tokio::test]
async fn overrides_and_exempt_identities_get_their_own_limits_and_metrics_name_only_classes() {
    let upstream = Upstream::json("[]").await;
    let limits = "rate: {per_client: {requests: 1, per: 1m}, total: {requests: 8, per: 1m}},
      overrides: [{name: gold, match: {claim: plan, value: gold}, rate: {requests: 3, per: 1m}},
                  {name: partner, match: {header: X-Partner, value: acme}, concurrency: 5}],
      exempt: [{claim: sub, value: batch-exporter}]";
    let (config, _files) = yaml(limits, "");
    let proxy = Proxy::start(&config, &upstream).await;
    let (alice, bob) = (token("alice", "free"), token("bob", "gold"));
    let got = as_client(&proxy, &alice).await;
    assert_eq!(
        got.header("ratelimit-policy"),
        Some("\"client\";q=1;w=60, \"route\";q=8;w=60")
    );
    as_client(&proxy, &alice).await.problem(429);
    // A class without a rate of its own spends the default's bucket: sending the header
    // gains alice nothing.
    let headers = [
        ("authorization", alice.clone()),
        ("x-partner", "acme".to_owned()),
    ];
    get_with(&proxy, "/orders", &headers).await.problem(429);
    for _ in 0..3 {
        let got = as_client(&proxy, &bob).await;
        assert_eq!(got.status, 200);
        assert_eq!(
            got.header("ratelimit-policy"),
            Some("\"client\";q=3;w=60, \"route\";q=8;w=60")
        );
    }
    as_client(&proxy, &bob).await.problem(429);
    // The exempt identity meets no limit, and spends none of the route's total.
    let batch = token("batch-exporter", "free");
    for _ in 0..10 {
        let got = as_client(&proxy, &batch).await;
        assert_eq!(got.status, 200);
        assert!(got.header("ratelimit").is_none(), "no limit applied");
    }
    // The total binds every class: 4 spent so far (alice 1, bob 3); four more gold clients
    // spend the rest, and the next one is refused by the route's total.
    for i in 0..4 {
        assert_eq!(
            as_client(&proxy, &token(&format!("g{i}"), "gold"))
                .await
                .status,
            200
        );
    }
    let got = as_client(&proxy, &token("g9", "gold")).await;
    assert!(
        got.problem(429)["detail"]
            .as_str()
            .expect("detail")
            .contains("route"),
        "{}",
        got.text()
    );
    let text = proxy.metrics_text().await;
    crate::support::assert_metrics(
        &text,
        &[
            "pagegate_limit_decisions_total{route=\"orders\",limit=\"rate_per_client\",decision=\"refused\",tenant_class=\"default\"} 1",
            "pagegate_limit_decisions_total{route=\"orders\",limit=\"rate_per_client\",decision=\"refused\",tenant_class=\"partner\"} 1",
            "pagegate_limit_decisions_total{route=\"orders\",limit=\"rate_per_client\",decision=\"refused\",tenant_class=\"gold\"} 1",
            "pagegate_limit_decisions_total{route=\"orders\",limit=\"rate_total\",decision=\"refused\",tenant_class=\"gold\"} 1",
            "pagegate_limit_decisions_total{route=\"orders\",limit=\"exempt\",decision=\"passed\",tenant_class=\"exempt\"} 10",
        ],
    );
    for raw in ["alice", "bob", "batch-exporter"] {
        assert!(!text.contains(raw), "a key in the metrics: {raw}");
    }
    proxy.stop().await;
}

/// Two requests of plan `plan` at once (the second 60 ms later): their statuses.
async fn two(proxy: &Proxy, plan: &str) -> (u16, u16) {
    let headers = [("x-plan", plan.to_owned())];
    let later = async {
        tokio::time::sleep(Duration::from_millis(60)).await;
        get_with(proxy, "/export", &headers).await
    };
    let (a, b) = tokio::join!(get_with(proxy, "/export", &headers), later);
    (a.status.as_u16(), b.status.as_u16())
}

/// A proxy whose route `/export` has `limits` (and the file's `top` keys) and streams `rows`
/// rows, one every 50 ms (the upstream is returned to be kept).
async fn exporting(rows: u32, limits: &str, top: &str) -> (Upstream, Proxy) {
    let upstream = Upstream::start(move |_| async move {
        http::Response::new(crate::support::bodies::slow_rows(
            rows,
            Duration::from_millis(50),
            b"row\n",
        ))
    })
    .await;
    let yaml = format!(
        "{top}upstreams: {{app: {{url: '{{upstream}}'}}}}
routes:
  - name: export
    path: /export
    upstream: app
    limits: {limits}
"
    );
    let proxy = Proxy::start(&yaml, &upstream).await;
    (upstream, proxy)
}

/// The override of the concurrency tests: `X-Plan: enterprise` may have two in flight.
const ENTERPRISE: &str =
    "overrides: [{name: enterprise, match: {header: X-Plan, value: enterprise}, concurrency: 2}]";

#[tokio::test]
async fn a_header_override_lifts_the_per_client_concurrency() {
    let limits = format!("{{concurrency: {{per_client: 1}}, {ENTERPRISE}}}");
    let (_upstream, proxy) = exporting(6, &limits, "").await;
    assert_eq!(two(&proxy, "free").await, (200, 429));
    assert_eq!(two(&proxy, "enterprise").await, (200, 200));
    proxy.stop().await;
}

/// The statuses of `n` requests of plan `plan`, sent 20 ms apart and all at once in flight,
/// sorted.
async fn burst(proxy: &Proxy, plan: &str, n: u64) -> Vec<u16> {
    let headers = [("x-plan", plan.to_owned())];
    let one = |i: u64| {
        let headers = &headers;
        async move {
            tokio::time::sleep(Duration::from_millis(20 * i)).await;
            get_with(proxy, "/export", headers).await.status.as_u16()
        }
    };
    let mut statuses = futures_util::future::join_all((0..n).map(one)).await;
    statuses.sort_unstable();
    statuses
}

#[tokio::test]
async fn an_override_holds_its_own_share_of_the_queue() {
    let concurrency = "concurrency: {per_client: 1, total: 10, queue: 8, queue_timeout: 5s}";
    let (_upstream, proxy) = exporting(4, &format!("{{{concurrency}, {ENTERPRISE}}}"), "").await;
    // Two in flight and two waiting: the class's own cap on one client's places.
    assert_eq!(burst(&proxy, "enterprise", 4).await, [200, 200, 200, 200]);
    // The default class: one in flight, one waiting, the third over its share.
    assert_eq!(burst(&proxy, "free", 3).await, [200, 200, 429]);
    proxy.stop().await;
}

#[tokio::test]
async fn through_redis_a_class_without_a_cap_takes_no_slot() {
    let redis = RedisServer::start();
    let top = format!(
        "admin: {{listen: 127.0.0.1:0}}\nredis: {{url: '{}', timeout: 500ms}}\n",
        redis.url()
    );
    // Only the override has a concurrency cap; the default class has a rate and no cap, and
    // Redis failing would refuse (`closed`).
    let limits =
        "{store: redis, on_store_error: closed, rate: {per_client: {requests: 100, per: 1m}},
      overrides: [{name: free, match: {header: X-Plan, value: free}, concurrency: 1}]}";
    let (_upstream, proxy) = exporting(6, limits, &top).await;
    assert_eq!(two(&proxy, "paid").await, (200, 200));
    assert_eq!(two(&proxy, "free").await, (200, 429));
    let metrics = proxy.metrics_text().await;
    assert!(!metrics.contains("decision=\"fallback\""), "{metrics}");
    proxy.stop().await;
}

#[tokio::test]
async fn an_override_budget_is_shared_through_redis_under_keys_of_its_own() {
    let redis = RedisServer::start();
    let upstream = Upstream::start(|_| async { json_response("[]") }).await;
    let limits = "store: redis, rate: {per_client: {requests: 1, per: 1h}},
      overrides: [{name: gold, match: {claim: plan, value: gold}, rate: {requests: 3, per: 1h}}]";
    let top = format!("redis: {{url: '{}', timeout: 500ms}}\n", redis.url());
    let (config, _files) = yaml(limits, &top);
    let (one, two) = (
        Proxy::start(&config, &upstream).await,
        Proxy::start(&config, &upstream).await,
    );
    let bob = token("bob", "gold");
    for proxy in [&one, &two, &one] {
        assert_eq!(as_client(proxy, &bob).await.status, 200);
    }
    as_client(&two, &bob).await.problem(429);
    // The same key in the default class has a bucket of its own (and its own rate).
    let free = token("bob", "free");
    assert_eq!(as_client(&two, &free).await.status, 200);
    as_client(&one, &free).await.problem(429);
    let mut conn = crate::support::redis::connect(&redis).await;
    let keys = crate::support::redis::keys(&mut conn, "*").await;
    assert!(
        keys.iter().any(|k| k.contains("{orders}:t:gold:c:")),
        "{keys:?}"
    );
    assert!(keys.iter().any(|k| k.contains("{orders}:c:")), "{keys:?}");
    one.stop().await;
    two.stop().await;
}

#[test]
fn tenant_mistakes_are_located_with_their_fix() {
    let route = |limits: &str| {
        format!(
            "upstreams: {{app: {{url: 'http://127.0.0.1:9'}}}}\nroutes:\n  - name: r\n    path: /r\n    upstream: app\n    limits:\n      rate: {{per_client: {{requests: 1, per: 1s}}}}\n      {limits}\n"
        )
    };
    let cases = [
        (
            "overrides: [{name: Gold!, match: {header: X-Plan, value: g}, concurrency: 2}]",
            "t.yaml:8:",
            "write a name of lower-case letters",
        ),
        (
            "overrides: [{name: default, match: {header: X-Plan, value: g}, concurrency: 2}]",
            "t.yaml:8:",
            "not `default` or `exempt`",
        ),
        (
            "overrides: [{name: g, match: {header: X-Plan, value: g}}]",
            "t.yaml:8:",
            "sets no limit",
        ),
        (
            "overrides: [{name: g, match: {claim: plan, value: g}, concurrency: 2}]",
            "t.yaml:8:",
            "set `key: {jwt: NAME, claim: CLAIM}`",
        ),
        (
            "overrides: [{name: g, match: {claim: plan, header: X-Plan, value: g}, concurrency: 2}]",
            "t.yaml:8:",
            "set one of the two",
        ),
        (
            "overrides: [{name: g, match: {header: X-Plan, value: a}, concurrency: 2}, {name: g, match: {header: X-Plan, value: b}, concurrency: 3}]",
            "t.yaml:8:",
            "`g` is used twice",
        ),
        (
            "exempt: [{header: X-Service, value: batch}]",
            "t.yaml:8:",
            "cannot exempt a request: a client could send it itself",
        ),
    ];
    for (limits, at, fix) in cases {
        let yaml = route(limits);
        let text = match pagegate::Config::parse("t.yaml", &yaml) {
            Ok(_) => panic!("expected a problem for {limits}"),
            Err(e) => e.to_string(),
        };
        assert!(
            text.contains(at) && text.contains(fix),
            "{limits}:\n{text}\nshould say {at} … {fix}"
        );
    }
}
