//! `limits.batch` against a real `redis-server`: rates decided in each process and flushed
//! together; two replicas let on no more than the documented bound, every request let on is
//! counted in Redis, a stale view follows `on_redis_error`, and keys forgotten at
//! `max_clients` are counted.

use std::time::Duration;

use bytes::Bytes;

use crate::support::process::Replica;
use crate::support::redis::{RedisServer, script_runs};
use crate::support::{Proxy, Upstream};

/// GCRA state of every `rate` key in `redis`: (Redis's clock, each key's theoretical arrival
/// time), both in µs.
async fn rate_state(redis: &RedisServer) -> (i64, Vec<i64>) {
    let mut conn = crate::support::redis::connect(redis).await;
    let keys = crate::support::redis::keys(&mut conn, "pagegate:rate:*").await;
    let (secs, micros): (i64, i64) = redis::cmd("TIME")
        .query_async(&mut conn)
        .await
        .expect("TIME");
    let mut tats = Vec::new();
    for key in keys {
        let tat: i64 = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("GET");
        tats.push(tat);
    }
    (secs * 1_000_000 + micros, tats)
}

#[tokio::test]
async fn two_batching_replicas_stay_within_the_bound_and_every_request_is_counted() {
    let mut redis = RedisServer::start();
    let upstream = Upstream::json("[]").await;
    // Six requests an hour (one every 600 s), a burst of six.
    let yaml = format!(
        "redis: {{url: '{}', timeout: 200ms}}
default: {{action: deny}}
upstreams: {{app: {{url: '{}'}}}}
routes:
  - {{name: page, path: /page, upstream: app, limits: {{store: redis, batch: 200ms, on_redis_error: closed, rate: {{per_client: {{requests: 6, per: 1h}}}}}}}}
",
        redis.url(),
        upstream.url()
    );
    let replicas = [Replica::start(&yaml), Replica::start(&yaml)];
    let before = script_runs(&redis).await;
    // Within one flush, each replica decides on what it knows.
    let mut passed = 0;
    for i in 0..20 {
        let got = crate::support::get(&replicas[i % 2].url("/page")).await;
        match got.status.as_u16() {
            200 => passed += 1,
            429 => {}
            other => panic!("{other}"),
        }
    }
    // Batched: far fewer calls than requests (each replica reads the key once, then flushes).
    let runs = script_runs(&redis).await - before;
    assert!(runs < 12, "20 requests cost {runs} script runs");
    // The bound: (replicas − 1) × (burst + rate × batch) over the limit, here 6 + 6.
    assert!(
        (6..=12).contains(&passed),
        "two replicas let on {passed}, the limit is 6 and the bound 12"
    );
    // After a flush, every request let on is in Redis's state; once a view has outlived its
    // window (two batches and redis.timeout: 600 ms), each replica reads it again: both
    // refuse, and say how long the overdraft takes to pay back.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let (now, tats) = rate_state(&redis).await;
    assert_eq!(tats.len(), 1, "one client, one key");
    let counted = (tats[0] - now) as f64 / 600e6;
    assert!(
        (counted - f64::from(passed)).abs() < 1.0,
        "Redis counts {counted:.2} requests, {passed} were let on"
    );
    for replica in &replicas {
        let got = crate::support::get(&replica.url("/page")).await;
        got.problem(429);
        assert!(got.retry_after() > 600, "overdraft is paid back by waiting");
    }
    // Redis gone: once the view is a second old, `closed` refuses with 503.
    redis.kill();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    crate::support::get(&replicas[0].url("/page"))
        .await
        .problem(503);
}

#[tokio::test]
async fn a_request_the_view_let_on_is_counted_once_when_its_slot_falls_back() {
    let mut redis = RedisServer::start();
    let upstream = Upstream::json("[]").await;
    // `batch: 1s`: the view stays fresh for 3 s after the last flush.
    let yaml = redis.config(
        "  - {name: page, path: /page, upstream: app, limits: {store: redis, batch: 1s, on_redis_error: open, rate: {per_client: {requests: 2, per: 1h}}, concurrency: {per_client: 10}}}\n",
    );
    let proxy = Proxy::start(&yaml, &upstream).await;
    let get = || crate::support::get_with(&proxy, "/page", &[]);
    assert_eq!(get().await.status, 200, "1 of 2, read from Redis");
    redis.kill();
    // The fresh view lets the second on; its slot's call fails and the slot falls back.
    assert_eq!(get().await.status, 200, "2 of 2, decided by the view");
    get().await.problem(429);
    // Once the view is stale, this process's own limiter decides, and it has counted
    // nothing yet: the request the view let on was not counted a second time.
    tokio::time::sleep(Duration::from_millis(3300)).await;
    assert_eq!(get().await.status, 200);
    assert_eq!(get().await.status, 200, "the local limiter's second");
    get().await.problem(429);
}

#[tokio::test]
async fn one_batching_replica_is_exact_and_forgets_keys_at_max_clients() {
    let redis = RedisServer::start();
    let upstream = Upstream::json("[]").await;
    let yaml = redis.config(
        "  - {name: keyed, path: /keyed, upstream: app, limits: {store: redis, batch: 100ms, max_clients: 1000, key: header, key_header: X-Api-Key, rate: {per_client: {requests: 3, per: 1h}}}}\n",
    );
    let proxy = Proxy::start(&yaml, &upstream).await;
    let client = crate::support::client();
    let ask = |key: String| {
        let request = http::Request::get(proxy.url("/keyed"))
            .header("x-api-key", key)
            .body(crate::support::full(Bytes::new()))
            .expect("request");
        client.request(request)
    };
    // Alone, the process's view is the whole truth: exactly three.
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(
            ask("one".to_owned())
                .await
                .expect("answer")
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    // A thousand keys fill `max_clients`; once flushed, a new one makes room for itself.
    for i in 0..999 {
        let status = ask(format!("k{i}")).await.expect("answer").status();
        assert_eq!(status, 200);
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(ask("new".to_owned()).await.expect("answer").status(), 200);
    crate::support::assert_metrics(
        &proxy.metrics_text().await,
        &["pagegate_limit_evictions_total{route=\"keyed\"} 1"],
    );
    // The key forgotten was read back from Redis: still limited.
    let mut refused = 0;
    for _ in 0..3 {
        if ask("one".to_owned()).await.expect("answer").status() == 429 {
            refused += 1;
        }
    }
    assert_eq!(refused, 3, "a forgotten key's spent budget stays spent");
    proxy.stop().await;
}

#[tokio::test]
async fn flushes_cost_what_was_counted_not_the_keys_remembered() {
    let redis = RedisServer::start();
    let upstream = Upstream::json("[]").await;
    let yaml = redis.config(
        "  - {name: rotated, path: /rotated, upstream: app, limits: {store: redis, batch: 50ms, on_redis_error: closed, key: header, key_header: X-Api-Key, rate: {per_client: {requests: 3, per: 1h}}}}\n",
    );
    let proxy = Proxy::start(&yaml, &upstream).await;
    let ask = |key: String| {
        let proxy = &proxy;
        async move {
            crate::support::get_with(proxy, "/rotated", &[("x-api-key", key)])
                .await
                .status
        }
    };
    // A client rotating keys: 600 of them, one request each, all remembered (10 s idle).
    for i in 0..600 {
        assert_eq!(ask(format!("k{i}")).await, 200);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Ten batches with nothing counted: no flush reads the 600 keys back.
    let before = script_runs(&redis).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = script_runs(&redis).await - before;
    assert_eq!(idle, 0, "{idle} script runs while nothing was counted");
    // A key used again after its view aged is read first, and still limited.
    for expected in [200, 200, 429] {
        assert_eq!(ask("k0".to_owned()).await, expected);
    }
    proxy.stop().await;
}

#[tokio::test]
async fn a_steady_client_within_its_rate_is_never_refused_across_flushes() {
    let redis = RedisServer::start();
    let upstream = Upstream::json("[]").await;
    // Ten a second, no burst, flushed every 50 ms: one request every 150 ms stays within it,
    // whatever the flushes in between (they must not charge a request at flush time).
    let yaml = redis.config(
        "  - {name: steady, path: /steady, upstream: app, limits: {store: redis, batch: 50ms, rate: {per_client: {requests: 10, per: 1s, burst: 1}}}}\n",
    );
    let proxy = Proxy::start(&yaml, &upstream).await;
    let mut tick = tokio::time::interval(Duration::from_millis(150));
    for i in 0..12 {
        tick.tick().await;
        let got = crate::support::get(&proxy.url("/steady")).await;
        assert_eq!(
            got.status, 200,
            "request {i} of a steady client was refused"
        );
    }
    // Two at once are over a burst of one: the second is refused.
    tick.tick().await;
    assert_eq!(crate::support::get(&proxy.url("/steady")).await.status, 200);
    crate::support::get(&proxy.url("/steady"))
        .await
        .problem(429);
    proxy.stop().await;
}

#[test]
fn batch_mistakes_are_located_with_their_fix() {
    let rate = "rate: {per_client: {requests: 5, per: 1s}}";
    let cases = [
        (format!("{{batch: 50ms, {rate}}}"), "add `store: redis`"),
        (
            "{store: redis, batch: 50ms, concurrency: {total: 5}}".to_owned(),
            "add a `rate`, or remove `batch`",
        ),
        (
            format!("{{store: redis, batch: 5s, {rate}}}"),
            "keep between 10ms and 1s",
        ),
        (format!("{{store: redis, batch: soon, {rate}}}"), "batch"),
    ];
    for (limits, fix) in cases {
        let yaml = format!(
            "redis: {{url: 'redis://127.0.0.1:9'}}\nupstreams: {{app: {{url: 'http://127.0.0.1:9'}}}}\nroutes:\n  - name: r\n    limits: {limits}\n    path: /r\n    upstream: app\n"
        );
        let text = match pagegate::Config::parse("t.yaml", &yaml) {
            Ok(_) => panic!("expected a problem for {limits}"),
            Err(e) => e.to_string(),
        };
        assert!(
            text.contains("t.yaml:5:") && text.contains(fix),
            "{limits}:\n{text}\nshould say t.yaml:5: … {fix}"
        );
    }
}
