//! Shared slots' leases in a real `redis-server`: renewed while an answer streams (past
//! `lease_ttl`), back for others within `lease_ttl` of a replica's `kill -9`, and given back
//! in batches when many answers end together.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;

use crate::support::process::Replica;
use crate::support::redis::{RedisServer, assert_no_leases, script_runs};
use crate::support::{Proxy, Upstream, json_response};

#[tokio::test]
async fn a_lease_outlives_its_ttl_while_streaming_and_a_killed_replicas_comes_back() {
    let redis = RedisServer::start();
    // `/long` streams for about 4 s, four times `lease_ttl`.
    let upstream = Upstream::start(|req| async move {
        if req.uri().path() != "/long" {
            return json_response("[]");
        }
        http::Response::new(crate::support::bodies::slow_rows(
            80,
            Duration::from_millis(50),
            b"row\n",
        ))
    })
    .await;
    let yaml = format!(
        "redis: {{url: '{}', timeout: 200ms, lease_ttl: 1s}}
default: {{action: deny}}
upstreams: {{app: {{url: '{}'}}}}
routes:
  - {{name: long, path: /long, upstream: app, limits: {{store: redis, concurrency: {{total: 1}}}}}}
",
        redis.url(),
        upstream.url()
    );
    let a = Replica::start(&yaml);
    let b = Replica::start(&yaml);
    let client = crate::support::client();
    let mut running = client
        .request(
            http::Request::get(a.url("/long"))
                .body(crate::support::full(Bytes::new()))
                .expect("request"),
        )
        .await
        .expect("export")
        .into_body();
    // Read on while B is asked, past twice the lease's life: renewals keep the slot A's.
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(2500) {
        let frame = running.frame().await.expect("a frame").expect("no error");
        assert!(frame.is_data());
        if started.elapsed() > Duration::from_millis(1200) {
            crate::support::get(&b.url("/long")).await.problem(503);
        }
    }
    // A dies with the lease held; its slot comes back within `lease_ttl` (plus a poll).
    drop(a);
    let killed = Instant::now();
    let status = loop {
        // Only the head: the answer then streams for seconds.
        let head = client
            .request(
                http::Request::get(b.url("/long"))
                    .body(crate::support::full(Bytes::new()))
                    .expect("request"),
            )
            .await
            .expect("an answer");
        if head.status() == 200 || killed.elapsed() > Duration::from_secs(3) {
            break head.status();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let waited = killed.elapsed();
    assert_eq!(status, 200, "the dead replica's slot never came back");
    assert!(
        waited <= Duration::from_millis(1300),
        "the slot came back {waited:?} after the kill, lease_ttl is 1s"
    );
}

#[tokio::test]
async fn leases_that_end_together_are_given_back_together() {
    const N: usize = 20;
    let redis = RedisServer::start();
    // Every request waits for all N: their answers end at once.
    let gate = Arc::new(tokio::sync::Barrier::new(N));
    let upstream = Upstream::start(move |_| {
        let gate = Arc::clone(&gate);
        async move {
            gate.wait().await;
            json_response("[]")
        }
    })
    .await;
    let yaml = format!(
        "redis: {{url: '{}', timeout: 500ms}}
default: {{action: deny}}
upstreams: {{app: {{url: '{{upstream}}', pool_max_idle: 64}}}}
routes:
  - {{name: held, path: /held, upstream: app, limits: {{store: redis, on_redis_error: closed, concurrency: {{per_client: 50, total: 100}}}}}}
",
        redis.url()
    );
    let proxy = Proxy::start(&yaml, &upstream).await;
    let url = proxy.url("/held");
    let fetch = || {
        let url = url.clone();
        tokio::spawn(async move { crate::support::get(&url).await })
    };
    // The first round loads the scripts.
    let warm = fetch();
    let rest: Vec<_> = (1..N).map(|_| fetch()).collect();
    assert_eq!(warm.await.expect("joined").status, 200);
    for got in rest {
        assert_eq!(got.await.expect("joined").status, 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = script_runs(&redis).await;
    let all: Vec<_> = (0..N).map(|_| fetch()).collect();
    for got in all {
        assert_eq!(got.await.expect("joined").status, 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let runs = script_runs(&redis).await - before;
    // The takes of one turn share a run, and the releases come in a few batches: far fewer
    // runs than requests.
    assert!(
        (2..=N as u64 / 2).contains(&runs),
        "{N} takes and a few batched releases, not one release each: {runs} script runs"
    );
    // Every slot was given back.
    assert_no_leases(&redis, "*slots*held*").await;
    proxy.stop().await;
}

#[tokio::test]
async fn a_replica_with_a_shorter_lease_ttl_cannot_cut_anothers_lease() {
    let redis = RedisServer::start();
    // `/x/long` streams for about 3 s; `/x/quick` answers at once.
    let upstream = Upstream::start(|req| async move {
        if req.uri().path() != "/x/long" {
            return json_response("[]");
        }
        http::Response::new(crate::support::bodies::slow_rows(
            60,
            Duration::from_millis(50),
            b"row\n",
        ))
    })
    .await;
    // A rolling change of `lease_ttl`: replica A still at 10 s, replica B at 1 s.
    let yaml = |ttl: &str| {
        format!(
            "redis: {{url: '{}', timeout: 200ms, lease_ttl: {ttl}}}
default: {{action: deny}}
upstreams: {{app: {{url: '{}'}}}}
routes:
  - {{name: rolling, path: '/x/{{*rest}}', upstream: app, limits: {{store: redis, concurrency: {{total: 2}}}}}}
",
            redis.url(),
            upstream.url()
        )
    };
    let (a, b) = (Replica::start(&yaml("10s")), Replica::start(&yaml("1s")));
    let mut running = crate::support::client()
        .request(
            http::Request::get(a.url("/x/long"))
                .body(crate::support::full(Bytes::new()))
                .expect("request"),
        )
        .await
        .expect("export")
        .into_body();
    // B takes a slot of the same set and gives it back: the set must not expire with B's
    // lease life, taking A's lease with it.
    assert_eq!(crate::support::get(&b.url("/x/quick")).await.status, 200);
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1600) {
        let frame = running.frame().await.expect("a frame").expect("no error");
        assert!(frame.is_data());
    }
    let mut conn = crate::support::redis::connect(&redis).await;
    let sets = crate::support::redis::keys(&mut conn, "*slots*rolling*total*").await;
    assert_eq!(sets.len(), 1, "the route's set is there: {sets:?}");
    let held = crate::support::redis::held(&mut conn, &sets[0]).await;
    assert_eq!(held, 1, "A's lease is held");
}

#[tokio::test]
async fn a_take_sent_again_after_it_ran_spends_nothing_more() {
    // The Cluster client sends a script again when the connection dropped before its answer;
    // the script ran already. Here the same call, twice: one rate key, one slot set of 1.
    let redis = RedisServer::start();
    let mut conn = crate::support::redis::connect(&redis).await;
    let take = include_str!("../../src/limit/shared/scripts/take.lua");
    let call = || {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(take)
            .arg(2)
            .arg("pg:rate:{r}:c:1")
            .arg("pg:slots:{r}:total");
        // One request of 2 keys and 6 arguments: one rate key (a second apart, a burst of
        // 3), a set of 1, the lease id, 10 s.
        cmd.arg(&[1, 2, 6])
            .arg(1)
            .arg(1_000_000)
            .arg(2_000_000)
            .arg(1)
            .arg("lease-1")
            .arg(10_000);
        cmd
    };
    let [first]: [Vec<i64>; 1] = call().query_async(&mut conn).await.expect("TAKE");
    let [again]: [Vec<i64>; 1] = call().query_async(&mut conn).await.expect("TAKE again");
    assert_eq!(first[..2], [0, 2], "taken: two of the burst left");
    assert_eq!(
        again[..2],
        [0, 2],
        "the same answer, nothing spent: {again:?}"
    );
    let held = crate::support::redis::held(&mut conn, "pg:slots:{r}:total").await;
    assert_eq!(held, 1);
    // Another lease finds the set full; the rate was spent once only (one of three left).
    let mut other = redis::cmd("EVAL");
    other
        .arg(take)
        .arg(2)
        .arg("pg:rate:{r}:c:1")
        .arg("pg:slots:{r}:total");
    other
        .arg(&[1, 2, 6])
        .arg(1)
        .arg(1_000_000)
        .arg(2_000_000)
        .arg(1)
        .arg("lease-2")
        .arg(10_000);
    let [full]: [Vec<i64>; 1] = other.query_async(&mut conn).await.expect("TAKE");
    assert_eq!(full[..3], [2, 1, 1], "{full:?}");
}

#[tokio::test]
async fn a_client_that_leaves_while_its_take_runs_leaves_no_lease_behind() {
    let redis = RedisServer::start();
    let upstream = crate::support::Upstream::json("[]").await;
    let yaml = format!(
        "redis: {{url: '{}', timeout: 3s}}
default: {{action: deny}}
upstreams: {{app: {{url: '{{upstream}}'}}}}
routes:
  - {{name: one, path: /one, upstream: app, limits: {{store: redis, on_redis_error: closed, concurrency: {{total: 1}}}}}}
",
        redis.url()
    );
    let proxy = Proxy::start(&yaml, &upstream).await;
    let url = proxy.url("/one");
    // The first request loads the script and gives its slot back.
    assert_eq!(crate::support::get(&url).await.status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_no_leases(&redis, "*slots*one*").await;
    // Redis forgets the script, then holds every command for 800 ms: the next request's
    // TAKE waits in it, and its client leaves after 200 ms. The TAKE then meets NOSCRIPT and
    // is sent again with the script's text, after its client left.
    let mut conn = crate::support::redis::connect(&redis).await;
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .expect("SCRIPT FLUSH");
    let before = script_runs(&redis).await;
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(800)
        .arg("ALL")
        .query_async(&mut conn)
        .await
        .expect("CLIENT PAUSE");
    let left = tokio::time::timeout(Duration::from_millis(200), crate::support::get(&url)).await;
    assert!(left.is_err(), "the client left before its answer");
    // The TAKE ran when Redis woke up. The lease it took is given back at once, not held for
    // `lease_ttl` (10 s) by nobody.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        script_runs(&redis).await >= before + 2,
        "the TAKE ran, and a RELEASE"
    );
    assert_no_leases(&redis, "*slots*one*").await;
    assert_eq!(
        upstream.seen().len(),
        1,
        "the request that left went no further"
    );
    assert_eq!(
        crate::support::get(&url).await.status,
        200,
        "the slot is free"
    );
    proxy.stop().await;
}
