//! Shared limits on a real Redis Cluster (three masters, a replica each) and on a master behind
//! three real Sentinels: two proxies share one budget; through a failover the limits fail as
//! configured (`on_redis_error: closed`) and, within 2 s of the promotion, are enforced through
//! the new master, whose counters the test reads. And TLS to a real `redis-server --tls-port`
//! with an ACL user and a client certificate.

use std::time::{Duration, Instant};

use crate::support::redis::RedisServer;
use crate::support::redis_sentinel::{MASTER_NAME, RedisSentinels};
use crate::support::redis_topologies::{ClusterTls, RedisCluster, cli_over, replicated, tls_args};
use crate::support::tls::Ca;
use http_body_util::BodyExt;

use crate::support::{Proxy, Upstream};

/// `page`: 4 requests an hour per `X-Api-Key`, shared through `redis`, refused while Redis
/// cannot answer.
fn config(redis: &str) -> String {
    // 300 ms unless the caller says otherwise: debug builds on two busy cores.
    let timeout = if redis.contains("timeout") {
        ""
    } else {
        ", timeout: 300ms"
    };
    format!(
        "redis: {{{redis}{timeout}}}
default: {{action: deny}}
upstreams: {{app: {{url: '{{upstream}}'}}}}
routes:
  - name: page
    path: /page
    upstream: app
    limits: {{store: redis, on_redis_error: closed, key: header, key_header: X-Api-Key,
              rate: {{per_client: {{requests: 4, per: 1h}}}}}}
  - name: export
    path: /export
    upstream: app
    limits: {{store: redis, on_redis_error: closed, concurrency: {{per_client: 1}}}}
"
    )
}

async fn get(proxy: &Proxy, key: &str) -> crate::support::Got {
    crate::support::send(
        http::Request::get(proxy.url("/page"))
            .header("x-api-key", key)
            .body(crate::support::full(bytes::Bytes::new()))
            .expect("request"),
    )
    .await
}

/// `redis.tls` naming `tls`'s CA and its certificate as the client's.
fn tls_block(tls: &ClusterTls) -> String {
    format!(
        "tls: {{ca_file: '{}', cert_file: '{}', key_file: '{}'}}",
        tls.ca.display(),
        tls.cert.display(),
        tls.key.display()
    )
}

/// A backend whose `/export` streams for about a second; anything else answers `[]` at once.
async fn backend() -> Upstream {
    Upstream::start(|req| async move {
        if req.uri().path() != "/export" {
            return crate::support::json_response("[]");
        }
        http::Response::new(crate::support::bodies::slow_rows(
            20,
            Duration::from_millis(50),
            b"row\n",
        ))
    })
    .await
}

/// An export through `a` holds the client's one slot on `b` too; once it ends, `b` may start
/// one: the lease is shared, and given back.
async fn one_slot(a: &Proxy, b: &Proxy) {
    let running = crate::support::get_head(&a.url("/export")).await;
    assert_eq!(running.status(), 200);
    crate::support::get(&b.url("/export")).await.problem(429);
    let _ = running
        .into_body()
        .collect()
        .await
        .expect("the whole export");
    let deadline = Instant::now() + Duration::from_secs(2);
    while crate::support::get(&b.url("/export")).await.status != 200 {
        assert!(Instant::now() < deadline, "the lease was not given back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Four requests of `key` through `a` and `b` in turn pass, the fifth is refused by either:
/// one budget, not one per proxy.
async fn one_budget(a: &Proxy, b: &Proxy, key: &str) {
    for proxy in [a, b, a, b] {
        assert_eq!(get(proxy, key).await.status, 200);
    }
    for proxy in [a, b] {
        get(proxy, key).await.problem(429);
    }
}

/// The rate keys `node` holds for route `page` (`--scan` lists one node's keys), asked over
/// TLS with `tls`.
fn page_keys(tls: Option<&ClusterTls>, node: u16) -> Vec<String> {
    cli_over(tls, node, &["--scan", "--pattern", "pagegate:*{page}*"])
        .lines()
        .map(str::to_owned)
        .collect()
}

/// After a promotion at `promoted`: within 2 s, requests of new clients are counted on the
/// new master `node`. Until then they may be refused (`closed`: 503) or, behind Sentinel, be
/// counted on the old master in the moment before it is demoted (Redis's own window; pagegate
/// asks the Sentinels every 0.5 s).
async fn enforced_through(tls: Option<&ClusterTls>, proxy: &Proxy, node: u16, promoted: Instant) {
    for n in 0.. {
        let before = page_keys(tls, node).len();
        let got = get(proxy, &format!("after-failover-{n}")).await;
        if got.status == 200 && page_keys(tls, node).len() == before + 1 {
            return;
        }
        assert!(
            got.status == 200 || got.status == 503,
            "passed, or refused while Redis cannot answer (closed): {}",
            got.status
        );
        assert!(
            promoted.elapsed() < Duration::from_secs(2),
            "limits not enforced through the new master 2 s after its promotion"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_shares_one_budget_and_follows_a_failover() {
    let mut cluster = RedisCluster::start();
    let upstream = backend().await;
    // One seed node: the rest of the cluster, and which node serves `{page}`, are learnt.
    let yaml = config(&format!("cluster: ['{}']", cluster.url(0)));
    let a = Proxy::start(&yaml, &upstream).await;
    let b = Proxy::start(&yaml, &upstream).await;
    one_budget(&a, &b, "before").await;
    // Leases too: `{export}`'s slot may be on another shard than `{page}`'s.
    one_slot(&a, &b).await;
    let master = cluster
        .master_of(cluster.ports[0], "page")
        .expect("a master serves {page}");
    assert_eq!(
        page_keys(None, master).len(),
        1,
        "the route's counters are on its shard's master"
    );
    // Replication is asynchronous: a write the replica has not seen is lost with its master,
    // as Redis documents. Wait until it has them, so what is checked below is pagegate's part.
    replicated(None, master);
    // The shard's master dies; its replica is promoted by the cluster.
    cluster.kill(master);
    let ask = *cluster
        .ports
        .iter()
        .find(|p| **p != master)
        .expect("a live node");
    let mut promoted = None;
    crate::support::redis_topologies::wait_until(
        Duration::from_secs(20),
        "the replica of the dead master is promoted",
        || {
            promoted = cluster.master_of(ask, "page").filter(|p| *p != master);
            promoted.is_some()
        },
    );
    let (new_master, at) = (promoted.expect("promoted"), Instant::now());
    enforced_through(None, &a, new_master, at).await;
    // The replica had the spent budget: it still holds on either proxy.
    get(&b, "before").await.problem(429);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_lead_to_the_master_and_to_the_new_one_after_a_failover() {
    sentinel_failover(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_over_tls_lead_to_the_master_and_to_the_new_one_after_a_failover() {
    let dir = crate::support::scratch_dir("redis-sentinel-tls");
    let ca = Ca::new("redis sentinel ca");
    let node = ca.issue(&["127.0.0.1"], &dir, "node");
    sentinel_failover(Some(ClusterTls {
        ca: ca.write(&dir, "ca.crt"),
        cert: node.cert,
        key: node.key,
    }))
    .await;
}

/// Two proxies share one budget through the master the Sentinels report; after a failover
/// they count on the new master within 2 s of its promotion. With `tls`, every node and
/// Sentinel speaks only TLS and asks for client certificates.
async fn sentinel_failover(tls: Option<ClusterTls>) {
    let sentinels = RedisSentinels::start_over(tls.clone());
    let tls = tls.as_ref();
    let upstream = backend().await;
    let urls: Vec<String> = sentinels.urls().iter().map(|u| format!("'{u}'")).collect();
    let files = tls.map_or(String::new(), |t| format!(", {}", tls_block(t)));
    // Plaintext with the default timeout, 50 ms: the master is looked up in the background,
    // not within it. TLS with 300 ms: a debug build's handshakes take tens of milliseconds.
    let timeout = if tls.is_some() { "300ms" } else { "50ms" };
    let yaml = config(&format!(
        "sentinel: {{master: {MASTER_NAME}, urls: [{}]}}{files}, timeout: {timeout}",
        urls.join(", ")
    ));
    let a = Proxy::start(&yaml, &upstream).await;
    let b = Proxy::start(&yaml, &upstream).await;
    for proxy in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(2);
        while get(proxy, "warm-up").await.status != 200 {
            assert!(Instant::now() < deadline, "no master found within 2 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    one_budget(&a, &b, "before").await;
    one_slot(&a, &b).await;
    let keys = |node| page_keys(tls, node).len();
    assert_eq!(
        keys(sentinels.master),
        2,
        "the counters (warm-up, before) are on the master"
    );
    replicated(tls, sentinels.master);
    let promoted = sentinels.fail_over();
    enforced_through(tls, &a, sentinels.replica, promoted).await;
    // The budget spent before the failover holds through the new master, on either proxy.
    get(&b, "before").await.problem(429);
    // 2 s after the promotion both have left the old master (demoted by now or not): new
    // clients are counted on the new one.
    tokio::time::sleep_until((promoted + Duration::from_secs(2)).into()).await;
    let (old, new) = (keys(sentinels.master), keys(sentinels.replica));
    for proxy in [&a, &b] {
        let key = format!("later-{}", proxy.addr);
        assert_eq!(get(proxy, &key).await.status, 200);
    }
    // Unless demoted by now (a replica then copies the new master's keys, and refuses writes).
    if sentinels
        .cli(sentinels.master, &["role"])
        .starts_with("master")
    {
        assert_eq!(
            keys(sentinels.master),
            old,
            "nothing more on the old master"
        );
    }
    assert_eq!(keys(sentinels.replica), new + 2);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_redis_verifies_the_server_presents_a_client_certificate_and_logs_in_as_a_user() {
    let dir = crate::support::scratch_dir("redis-tls");
    let ca = Ca::new("redis test ca");
    let ca_file = ca.write(&dir, "ca.crt");
    let server = ca.issue(&["127.0.0.1"], &dir, "redis");
    let client = ca.issue(&["pagegate"], &dir, "client");
    let serving = ClusterTls {
        ca: ca_file.clone(),
        cert: server.cert,
        key: server.key,
    };
    let redis = RedisServer::start_with(|port| tls_args(Some(&serving), port));
    // The client's side: the same CA, the client's certificate.
    let with = |ca: &std::path::Path| ClusterTls {
        ca: ca.to_path_buf(),
        cert: client.cert.clone(),
        key: client.key.clone(),
    };
    // An ACL user that may touch only pagegate's keys; the default user is off.
    let tls_cli = |args: &[&str]| cli_over(Some(&with(&ca_file)), redis.addr.port(), args);
    let acl = "ACL SETUSER pagegate on >s3cret resetkeys ~pagegate:* +@all";
    assert_eq!(tls_cli(&acl.split(' ').collect::<Vec<_>>()), "OK");
    assert_eq!(tls_cli(&["ACL", "SETUSER", "default", "off"]), "OK");
    let upstream = Upstream::json("[]").await;
    let url = format!("rediss://pagegate:s3cret@{}", redis.addr);
    let proxy = Proxy::start(
        &config(&format!("url: '{url}', {}", tls_block(&with(&ca_file)))),
        &upstream,
    )
    .await;
    one_budget(&proxy, &proxy, "over-tls").await;
    assert_eq!(
        tls_cli(&[
            "--user",
            "pagegate",
            "--pass",
            "s3cret",
            "--scan",
            "--pattern",
            "pagegate:*"
        ])
        .lines()
        .count(),
        1,
        "the counter, written as the ACL user over TLS"
    );
    proxy.stop().await;
    // A server whose certificate does not chain to `ca_file` is refused (closed: 503), as is
    // a client without the certificate the server asks for, and a wrong password.
    let other = Ca::new("another ca").write(&dir, "other.crt");
    let no_identity = format!("url: '{url}', tls: {{ca_file: '{}'}}", ca_file.display());
    let wrong_password = format!(
        "url: 'rediss://pagegate:nope@{}', {}",
        redis.addr,
        tls_block(&with(&ca_file))
    );
    for redis in [
        format!("url: '{url}', {}", tls_block(&with(&other))),
        no_identity,
        wrong_password,
    ] {
        let proxy = Proxy::start(&config(&redis), &upstream).await;
        get(&proxy, "refused").await.problem(503);
        proxy.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_over_tls_shares_one_budget() {
    let dir = crate::support::scratch_dir("redis-cluster-tls");
    let ca = Ca::new("redis cluster ca");
    let node = ca.issue(&["127.0.0.1"], &dir, "node");
    let tls = ClusterTls {
        ca: ca.write(&dir, "ca.crt"),
        cert: node.cert,
        key: node.key,
    };
    let cluster = RedisCluster::start_over(Some(tls.clone()));
    let upstream = Upstream::json("[]").await;
    // The nodes ask for client certificates (their own default): pagegate presents one.
    let yaml = config(&format!(
        "cluster: ['{}'], {}",
        cluster.url(1),
        tls_block(&tls)
    ));
    let a = Proxy::start(&yaml, &upstream).await;
    let b = Proxy::start(&yaml, &upstream).await;
    one_budget(&a, &b, "over-tls").await;
    let master = cluster
        .master_of(cluster.ports[0], "page")
        .expect("a master serves {page}");
    let keys = cluster.cli(master, &["--scan", "--pattern", "pagegate:*{page}*"]);
    assert_eq!(
        keys.lines().count(),
        1,
        "the counter on the route's shard: {keys}"
    );
    a.stop().await;
    b.stop().await;
}
