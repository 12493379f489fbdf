//! Limits shared through a real `redis-server`: two pagegate processes enforce one budget and
//! one set of slots together; when Redis dies, `on_redis_error: open` falls back to the local
//! limiters and `closed` answers 503; when it comes back, shared limits resume by themselves.

use std::time::{Duration, Instant};

use crate::support::process::Replica;
use crate::support::redis::{RedisServer, assert_no_leases, script_runs};
use crate::support::{Proxy, Upstream, json_response};
use bytes::Bytes;
use http_body_util::BodyExt;

/// A backend whose `/export` streams for about a second; anything else answers at once.
async fn backend() -> Upstream {
    Upstream::start(|req| async move {
        if req.uri().path() != "/export" {
            return json_response("[]");
        }
        http::Response::new(crate::support::bodies::slow_rows(
            20,
            Duration::from_millis(50),
            b"row\n",
        ))
    })
    .await
}

#[tokio::test]
async fn two_replicas_share_one_budget_and_one_set_of_slots() {
    let redis = RedisServer::start();
    let upstream = backend().await;
    let yaml = format!(
        "redis: {{url: '{}', timeout: 200ms}}
default: {{action: deny}}
upstreams: {{app: {{url: '{}'}}}}
routes:
  - {{name: page, path: /page, upstream: app, limits: {{store: redis, rate: {{per_client: {{requests: 4, per: 1h}}}}}}}}
  - {{name: export, path: /export, upstream: app, limits: {{store: redis, concurrency: {{per_client: 1}}}}}}
",
        redis.url(),
        upstream.url()
    );
    let a = Replica::start(&yaml);
    let b = Replica::start(&yaml);
    // Four requests in all, alternating replicas, then both refuse: one budget, not two.
    for replica in [&a, &b, &a, &b] {
        let got = crate::support::get(&replica.url("/page")).await;
        assert_eq!(got.status, 200);
        assert_eq!(
            got.header("ratelimit-policy"),
            Some("\"client\";q=4;w=3600")
        );
    }
    for replica in [&a, &b] {
        let got = crate::support::get(&replica.url("/page")).await;
        got.problem(429);
        let retry = got.retry_after();
        assert!(
            (890..=900).contains(&retry),
            "one request every 900 s: {retry}"
        );
    }
    assert_eq!(
        upstream
            .seen()
            .iter()
            .filter(|s| s.target == "/page")
            .count(),
        4,
        "refused requests never reached the backend"
    );
    // An export running through A holds the client's one slot on B too.
    let client = crate::support::client();
    let running = client
        .request(
            http::Request::get(a.url("/export"))
                .body(crate::support::full(Bytes::new()))
                .expect("request"),
        )
        .await
        .expect("export");
    assert_eq!(running.status(), 200);
    crate::support::get(&b.url("/export")).await.problem(429);
    // Finished: the lease is given back, and B may start one.
    running.into_body().collect().await.expect("whole export");
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let got = crate::support::get(&b.url("/export")).await;
        if got.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the lease was not given back: {}",
            got.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn when_redis_dies_open_falls_back_closed_refuses_and_both_recover_by_themselves() {
    let mut redis = RedisServer::start();
    let upstream = Upstream::json("[]").await;
    let yaml = format!(
        "redis: {{url: '{}', timeout: 100ms}}
admin: {{listen: 127.0.0.1:0}}
default: {{action: deny}}
upstreams: {{app: {{url: '{{upstream}}'}}}}
routes:
  - {{name: open, path: /open, upstream: app, limits: {{store: redis, on_redis_error: open, rate: {{total: {{requests: 1000, per: 1s}}}}}}}}
  - {{name: closed, path: /closed, upstream: app, limits: {{store: redis, on_redis_error: closed, rate: {{total: {{requests: 1000, per: 1s}}}}}}}}
",
        redis.url()
    );
    let proxy = Proxy::start(&yaml, &upstream).await;
    assert_eq!(crate::support::get(&proxy.url("/open")).await.status, 200);
    assert_eq!(crate::support::get(&proxy.url("/closed")).await.status, 200);
    redis.kill();
    let got = crate::support::get(&proxy.url("/open")).await;
    assert_eq!(got.status, 200, "open: the local limiter decides");
    assert!(
        got.header("ratelimit").is_some(),
        "the local limiter's fields"
    );
    let got = crate::support::get(&proxy.url("/closed")).await;
    let problem = got.problem(503);
    assert_eq!(problem["type"], "urn:pagegate:problem:limits-unavailable");
    assert_eq!(got.header("retry-after"), Some("1"));
    // Redis comes back on the same address: shared limits resume without a restart.
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while crate::support::get(&proxy.url("/closed")).await.status != 200 {
        assert!(Instant::now() < deadline, "shared limits did not resume");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    crate::support::assert_metrics(
        &proxy.metrics_text().await,
        &[
            "pagegate_limit_decisions_total{route=\"open\",limit=\"redis\",decision=\"fallback\",tenant_class=\"default\"}",
            "pagegate_limit_decisions_total{route=\"closed\",limit=\"redis\",decision=\"refused\",tenant_class=\"default\"}",
        ],
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_rate_and_a_slot_are_taken_in_one_round_trip() {
    let redis = RedisServer::start();
    let upstream = Upstream::json("[]").await;
    let yaml = redis.config(
        "  - {name: both, path: /both, upstream: app, limits: {store: redis, rate: {per_client: {requests: 100, per: 1h}}, concurrency: {per_client: 2, total: 10}}}
  - {name: tight, path: /tight, upstream: app, limits: {store: redis, rate: {per_client: {requests: 1, per: 1h}}, concurrency: {total: 10}}}
",
    );
    let proxy = Proxy::start(&yaml, &upstream).await;
    // The first request loads the scripts.
    assert_eq!(crate::support::get(&proxy.url("/both")).await.status, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = script_runs(&redis).await;
    for _ in 0..5 {
        let got = crate::support::get(&proxy.url("/both")).await;
        assert_eq!(got.status, 200);
        assert!(got.header("ratelimit").is_some(), "the rate was checked");
    }
    // Each slot is given back when its body ends (at once: the route is otherwise idle).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let runs = script_runs(&redis).await - before;
    assert_eq!(
        runs, 10,
        "two script runs a request: the rate and the slot together, and the slot given back"
    );
    // A request the rate refuses takes no slot: none is left behind in Redis.
    assert_eq!(crate::support::get(&proxy.url("/tight")).await.status, 200);
    crate::support::get(&proxy.url("/tight")).await.problem(429);
    assert_no_leases(&redis, "*slots*tight*").await;
    proxy.stop().await;
}

#[tokio::test]
async fn a_shared_address_rate_holds_across_replicas_whatever_header_is_sent() {
    let redis = RedisServer::start();
    let upstream = backend().await;
    let yaml = format!(
        "redis: {{url: '{}', timeout: 200ms}}
default: {{action: deny}}
upstreams: {{app: {{url: '{}'}}}}
routes:
  - {{name: page, path: /page, upstream: app, limits: {{store: redis, key: header_and_client, key_header: X-Api-Key, rate: {{per_client: {{requests: 2, per: 1h}}, per_address: {{requests: 5, per: 1h}}}}}}}}
",
        redis.url(),
        upstream.url()
    );
    let replicas = [Replica::start(&yaml), Replica::start(&yaml)];
    let client = crate::support::client();
    let mut passed = 0;
    for i in 0..12 {
        let request = http::Request::get(replicas[i % 2].url("/page"))
            .header("x-api-key", format!("key-{i}"))
            .body(crate::support::full(Bytes::new()))
            .expect("request");
        let response = client.request(request).await.expect("answer");
        match response.status().as_u16() {
            200 => passed += 1,
            429 => {}
            other => panic!("{other}"),
        }
    }
    assert_eq!(passed, 5, "one budget per address, across both replicas");
}

#[tokio::test]
async fn requests_that_come_together_share_a_script_run_and_stay_exact() {
    let redis = RedisServer::start();
    let upstream = Upstream::json("[]").await;
    let yaml = redis.config(
        "  - {name: page, path: /page, upstream: app, limits: {store: redis, on_redis_error: closed, rate: {per_client: {requests: 40, per: 1h}}}}\n",
    );
    let proxy = Proxy::start(&yaml, &upstream).await;
    // The first request loads the script; it spends one of the 40.
    assert_eq!(crate::support::get(&proxy.url("/page")).await.status, 200);
    let before = script_runs(&redis).await;
    let url = proxy.url("/page");
    let requests = (0..99).map(|_| crate::support::get(&url));
    let got = futures_util::future::join_all(requests).await;
    let runs = script_runs(&redis).await - before;
    let statuses = |status| got.iter().filter(|g| g.status == status).count();
    // `closed`: a run that failed would answer 503, not fall back to local limits.
    assert_eq!(
        (statuses(200), statuses(429)),
        (39, 60),
        "the budget, exactly"
    );
    assert_eq!(upstream.seen().len(), 40);
    assert!(
        runs <= 20,
        "99 requests at once took {runs} script runs, not a few"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn one_script_run_takes_its_requests_in_turn() {
    let redis = RedisServer::start();
    let mut conn = crate::support::redis::connect(&redis).await;
    let take = include_str!("../../src/limit/shared/scripts/take.lua");
    // Three requests: two on one rate key with a burst of 1 (the second is refused), one on
    // another key with a slot set of 1; each with its own key and argument counts.
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(take).arg(4);
    cmd.arg(&["pg:rate:{r}:c:a", "pg:rate:{r}:c:a", "pg:rate:{r}:c:b"])
        .arg("pg:slots:{r}:total");
    cmd.arg(3)
        .arg(&["1", "5", "1", "1000000", "0", "id-1", "10000"])
        .arg(&["1", "5", "1", "1000000", "0", "id-2", "10000"])
        .arg(&["2", "6", "1", "1000000", "0", "1", "id-3", "10000"]);
    let answers: Vec<Vec<i64>> = cmd.query_async(&mut conn).await.expect("TAKE");
    assert_eq!(answers.len(), 3, "{answers:?}");
    assert_eq!(answers[0][..2], [0, 0], "taken, none left: {answers:?}");
    assert_eq!(answers[1][..2], [1, 1], "refused by its rate: {answers:?}");
    let wait = answers[1][2];
    assert!((900_000..=1_000_000).contains(&wait), "{answers:?}");
    assert_eq!(
        answers[2][..2],
        [0, 0],
        "its own key, and the slot: {answers:?}"
    );
    let held = crate::support::redis::held(&mut conn, "pg:slots:{r}:total").await;
    assert_eq!(held, 1);
    // A request whose key holds another type fails alone; the others are decided.
    let _: () = redis::cmd("LPUSH")
        .arg("pg:rate:{r}:c:list")
        .arg("x")
        .query_async(&mut conn)
        .await
        .expect("LPUSH");
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(take).arg(2);
    cmd.arg(&["pg:rate:{r}:c:list", "pg:rate:{r}:c:c"]);
    cmd.arg(2)
        .arg(&["1", "5", "1", "1000000", "0", "id-4", "10000"])
        .arg(&["1", "5", "1", "1000000", "0", "id-5", "10000"]);
    let answers: Vec<Vec<i64>> = cmd.query_async(&mut conn).await.expect("TAKE");
    assert_eq!(answers[0], [3], "{answers:?}");
    assert_eq!(answers[1][..2], [0, 0], "{answers:?}");
}
