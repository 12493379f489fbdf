//! Shared limits on a real Redis Cluster (three masters, a replica each) and on a master behind
//! three real Sentinels: two proxies share one budget; through a failover the limits fail as
//! configured (`on_redis_error: closed`) and, within 2 s of the promotion, are enforced through
//! the new master, whose counters the test reads.

use std::time::{Duration, Instant};

use crate::support::redis_topologies::{
    MASTER_NAME, RedisCluster, RedisSentinels, cli, replicated,
};
use crate::support::{Proxy, Upstream};

/// `page`: 4 requests an hour per `X-Api-Key`, shared through `redis`, refused while Redis
/// cannot answer.
fn config(redis: &str) -> String {
    format!(
        "redis: {{{redis}, timeout: 300ms}}
default: {{action: deny}}
upstreams: {{app: {{url: '{{upstream}}'}}}}
routes:
  - name: page
    path: /page
    upstream: app
    limits: {{store: redis, on_redis_error: closed, key: header, key_header: X-Api-Key,
              rate: {{per_client: {{requests: 4, per: 1h}}}}}}
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

/// The rate keys `node` holds for route `page` (`--scan` lists one node's keys).
fn page_keys(node: u16) -> Vec<String> {
    cli(node, &["--scan", "--pattern", "pagegate:*{page}*"])
        .lines()
        .map(str::to_owned)
        .collect()
}

/// After a promotion at `promoted`: within 2 s, requests of new clients are counted on the
/// new master `node`. Until then they may be refused (`closed`: 503) or, behind Sentinel, be
/// counted on the old master in the moment before it is demoted (Redis's own window; pagegate
/// asks the Sentinels every 0.5 s).
async fn enforced_through(proxy: &Proxy, node: u16, promoted: Instant) {
    for n in 0.. {
        let before = page_keys(node).len();
        let got = get(proxy, &format!("after-failover-{n}")).await;
        if got.status == 200 && page_keys(node).len() == before + 1 {
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
    let upstream = Upstream::json("[]").await;
    // One seed node: the rest of the cluster, and which node serves `{page}`, are learnt.
    let yaml = config(&format!("cluster: ['{}']", cluster.url(0)));
    let a = Proxy::start(&yaml, &upstream).await;
    let b = Proxy::start(&yaml, &upstream).await;
    one_budget(&a, &b, "before").await;
    let master = cluster
        .master_of(cluster.ports[0], "page")
        .expect("a master serves {page}");
    assert_eq!(
        page_keys(master).len(),
        1,
        "the route's counters are on its shard's master"
    );
    // Replication is asynchronous: a write the replica has not seen is lost with its master,
    // as Redis documents. Wait until it has them, so what is checked below is pagegate's part.
    replicated(master);
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
    enforced_through(&a, new_master, at).await;
    // The replica had the spent budget: it still holds on either proxy.
    get(&b, "before").await.problem(429);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_lead_to_the_master_and_to_the_new_one_after_a_failover() {
    let sentinels = RedisSentinels::start();
    let upstream = Upstream::json("[]").await;
    let urls: Vec<String> = sentinels.urls().iter().map(|u| format!("'{u}'")).collect();
    let yaml = config(&format!(
        "sentinel: {{master: {MASTER_NAME}, urls: [{}]}}",
        urls.join(", ")
    ));
    let a = Proxy::start(&yaml, &upstream).await;
    let b = Proxy::start(&yaml, &upstream).await;
    one_budget(&a, &b, "before").await;
    assert_eq!(
        page_keys(sentinels.master).len(),
        1,
        "the counters are on the master"
    );
    replicated(sentinels.master);
    let promoted = sentinels.fail_over();
    enforced_through(&a, sentinels.replica, promoted).await;
    // The budget spent before the failover holds through the new master, on either proxy.
    get(&b, "before").await.problem(429);
    // 2 s after the promotion both have left the old master (demoted by now or not): new
    // clients are counted on the new one.
    tokio::time::sleep_until((promoted + Duration::from_secs(2)).into()).await;
    let (old, new) = (
        page_keys(sentinels.master).len(),
        page_keys(sentinels.replica).len(),
    );
    for proxy in [&a, &b] {
        assert_eq!(
            get(proxy, &format!("later-{}", proxy.addr)).await.status,
            200
        );
    }
    assert_eq!(
        page_keys(sentinels.master).len(),
        old,
        "nothing more on the old master"
    );
    assert_eq!(page_keys(sentinels.replica).len(), new + 2);
    a.stop().await;
    b.stop().await;
}
