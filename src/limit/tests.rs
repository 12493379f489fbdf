//! Quotas, bursts, `Retry-After` and the `RateLimit` fields on governor's fake clock; the
//! per-client store's cap; slots per client and in total, with and without a queue.

use crate::limit::config::Rate;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::Arc;
use std::time::Duration;

use governor::clock::FakeRelativeClock;
use http::HeaderValue;

use super::concurrency::Slots;
use super::rate::Rates;
use super::*;
use crate::limit::config::Queue;

fn rate(requests: u32, per_secs: u64, burst: u32) -> Rate {
    Rate {
        requests: NonZeroU32::new(requests).expect("nonzero"),
        per: Duration::from_secs(per_secs),
        burst: NonZeroU32::new(burst).expect("nonzero"),
    }
}

fn key(n: u128) -> ClientKey {
    ClientKey(n, n, 0)
}

fn text(value: &HeaderValue) -> &str {
    value.to_str().expect("ascii")
}

#[test]
fn a_burst_passes_then_the_client_waits_one_interval_and_is_told_so() {
    let clock = FakeRelativeClock::default();
    // 6 a minute (one every 10 s), 3 at once.
    let rates = Rates::with_clock(
        (Some(rate(6, 60, 3)), None),
        None,
        NonZeroUsize::new(1000).expect("n"),
        clock.clone(),
    )
    .expect("a rate");
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let (verdict, fields) = rates.check(&key(1));
        assert_eq!(verdict, Ok(()));
        assert_eq!(text(&fields.policy), "\"client\";q=6;w=60");
        remaining.push(text(&fields.state).to_owned());
    }
    assert_eq!(
        remaining,
        [
            "\"client\";r=2;t=10",
            "\"client\";r=1;t=20",
            "\"client\";r=0;t=30"
        ]
    );
    let (verdict, fields) = rates.check(&key(1));
    let refused = verdict.expect_err("the burst is spent");
    assert_eq!(refused.which, Which::PerClient);
    assert_eq!(refused.retry_after, 10);
    assert_eq!(text(&fields.state), "\"client\";r=0;t=10");
    // Another client has its own budget.
    assert_eq!(rates.check(&key(2)).0, Ok(()));
    // 4 s later: 6 s to wait; 10 s later: one more passes.
    clock.advance(Duration::from_secs(4));
    assert_eq!(
        rates.check(&key(1)).0.expect_err("still early").retry_after,
        6
    );
    clock.advance(Duration::from_secs(6));
    assert_eq!(rates.check(&key(1)).0, Ok(()));
}

#[test]
fn the_route_total_holds_across_clients_and_a_client_refused_does_not_spend_it() {
    let rates = Rates::with_clock(
        (Some(rate(1, 60, 1)), None),
        Some(rate(3, 1, 3)),
        NonZeroUsize::new(1000).expect("n"),
        FakeRelativeClock::default(),
    )
    .expect("rates");
    assert_eq!(rates.check(&key(1)).0, Ok(()));
    // Refused by its own rate: the route's budget is not touched.
    assert_eq!(
        rates.check(&key(1)).0.expect_err("own rate").which,
        Which::PerClient
    );
    assert_eq!(rates.check(&key(2)).0, Ok(()));
    let (verdict, fields) = rates.check(&key(3));
    assert_eq!(verdict, Ok(()));
    assert_eq!(
        text(&fields.policy),
        "\"client\";q=1;w=60, \"route\";q=3;w=1"
    );
    let refused = rates
        .check(&key(4))
        .0
        .expect_err("the route's total is spent");
    assert_eq!(refused.which, Which::Total);
    assert_eq!(refused.retry_after, 1);
}

#[test]
fn at_the_cap_full_buckets_are_forgotten_and_new_clients_share_one_until_then() {
    let clock = FakeRelativeClock::default();
    let rates = Rates::with_clock(
        (Some(rate(1, 1, 1)), None),
        None,
        NonZeroUsize::new(2).expect("n"),
        clock.clone(),
    )
    .expect("a rate");
    assert_eq!(rates.check(&key(1)).0, Ok(()));
    assert_eq!(rates.check(&key(2)).0, Ok(()));
    // The map is full: new clients share the overflow bucket (one request, then refused).
    assert_eq!(rates.check(&key(3)).0, Ok(()));
    assert!(
        rates.check(&key(4)).0.is_err(),
        "a new client is limited, not let through"
    );
    assert_eq!(rates.clients(), 2, "memory stays at the cap");
    // Once the old buckets are full again, housekeeping forgets them: room for new clients.
    clock.advance(Duration::from_secs(5));
    rates.housekeep();
    assert_eq!(rates.clients(), 0);
    assert_eq!(rates.check(&key(4)).0, Ok(()));
}

#[test]
fn rotating_the_header_gains_no_more_than_the_address_allows() {
    let rates = Rates::with_clock(
        (Some(rate(1, 60, 1)), Some(rate(3, 60, 3))),
        None,
        NonZeroUsize::new(1000).expect("n"),
        FakeRelativeClock::default(),
    )
    .expect("rates");
    // Keys 10, 11, 12 and 13 are four header values sent from one address (7).
    for n in 10..13 {
        assert_eq!(rates.check(&ClientKey(n, 7, 0)).0, Ok(()), "header {n}");
    }
    let (verdict, fields) = rates.check(&ClientKey(13, 7, 0));
    assert_eq!(
        verdict.expect_err("the address is spent").which,
        Which::PerAddress
    );
    assert_eq!(
        text(&fields.policy),
        "\"client\";q=1;w=60, \"address\";q=3;w=60"
    );
    // Another address is not touched.
    assert_eq!(rates.check(&ClientKey(14, 8, 0)).0, Ok(()));
}

fn slots(per_client: Option<u32>, total: Option<u32>, queue: Option<Queue>) -> Arc<Slots> {
    Slots::new(per_client, total, queue).expect("a limit")
}

#[test]
fn slots_per_client_and_in_total_free_when_dropped() {
    let slots = slots(Some(1), Some(2), None);
    let a = slots.try_take(key(1)).expect("first");
    assert_eq!(slots.try_take(key(1)).err(), Some(Full::PerClient(1)));
    let b = slots.try_take(key(2)).expect("another client");
    assert_eq!(slots.try_take(key(3)).err(), Some(Full::Total(2)));
    drop(a);
    assert!(slots.try_take(key(1)).is_ok());
    drop(b);
    assert_eq!(slots.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_queued_request_gets_the_next_free_slot_or_gives_up_after_its_timeout() {
    let queue = Queue {
        size: NonZeroU32::new(1).expect("n"),
        timeout: Duration::from_secs(2),
    };
    let slots = slots(None, Some(1), Some(queue));
    let first = slots.try_take(key(1)).expect("first");
    let waiting = tokio::spawn(Arc::clone(&slots).wait(key(2), Full::Total(1)));
    tokio::task::yield_now().await;
    // The queue holds one: a third request is refused at once.
    assert_eq!(
        Arc::clone(&slots).wait(key(3), Full::Total(1)).await.err(),
        Some(NoSlot::Full(Full::Total(1)))
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(first);
    let second = waiting
        .await
        .expect("task")
        .expect("admitted when the slot freed");
    // Nobody frees this one: the next waiter gives up after 2 s.
    let started = tokio::time::Instant::now();
    let gave_up = Arc::clone(&slots).wait(key(3), Full::Total(1)).await;
    assert_eq!(
        gave_up.err(),
        Some(NoSlot::Waited(Full::Total(1), Duration::from_secs(2)))
    );
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    drop(second);
}

#[tokio::test]
async fn a_slot_is_held_until_the_body_ends() {
    use http_body_util::BodyExt;
    let slots = slots(None, Some(1), None);
    let slot = slots.try_take(key(1)).expect("slot");
    let body = SlotBody::new(
        http_body_util::Full::new(bytes::Bytes::from_static(b"export")),
        slot,
    );
    assert_eq!(slots.in_flight(), 1);
    let mut body = std::pin::pin!(body);
    while body.frame().await.is_some() {}
    assert_eq!(
        slots.in_flight(),
        0,
        "freed at the body's end, before it is dropped"
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_that_leaves_the_queue_gives_its_place_back() {
    let queue = Queue {
        size: NonZeroU32::new(1).expect("n"),
        timeout: Duration::from_secs(60),
    };
    let slots = slots(None, Some(1), Some(queue));
    let held = slots.try_take(key(1)).expect("first");
    // A client queues, then goes away before a slot frees.
    let left = tokio::spawn(Arc::clone(&slots).wait(key(2), Full::Total(1)));
    tokio::task::yield_now().await;
    left.abort();
    let _ = left.await;
    // Its place is free again: the next request may queue, and gets the slot when it frees.
    let next = tokio::spawn(Arc::clone(&slots).wait(key(3), Full::Total(1)));
    tokio::task::yield_now().await;
    drop(held);
    assert!(next.await.expect("task").is_ok(), "queued, then admitted");
}

/// A route with only `pace` and `store: redis` shares nothing through Redis, and a reload with
/// the same settings keeps its limiters (its pace buckets) as any other route's.
#[tokio::test]
async fn pace_alone_is_not_shared_and_survives_a_reload() {
    use crate::limit::config::{
        ClientKeySource, LimitStore, LimitsConfig, OnRedisError, Pace, PaceScope, RedisConfig,
        RedisTopology,
    };
    let redis = Redis::new(RedisConfig {
        topology: RedisTopology::Single("redis://127.0.0.1:1".to_owned()),
        tls: None,
        timeout: Duration::from_millis(50),
        key_prefix: "pagegate".to_owned(),
        lease_ttl: Duration::from_secs(10),
    })
    .expect("a lazy client");
    let config = LimitsConfig {
        batch: None,
        descriptors: Vec::new(),
        cost: crate::limit::config::Cost::default(),
        key: ClientKeySource::Client,
        rate_per_client: None,
        rate_per_address: None,
        rate_total: None,
        concurrency_per_client: None,
        concurrency_total: None,
        queue: None,
        report_only: false,
        max_clients: NonZeroUsize::new(1000).expect("n"),
        store: LimitStore::Redis,
        on_redis_error: OnRedisError::Closed,
        pace: Some(Pace {
            bytes_per_second: NonZeroU32::new(1024).expect("n"),
            per: PaceScope::Client,
        }),
        overrides: Vec::new(),
        exempt: Vec::new(),
        quota: None,
    };
    let stores = crate::limit::Stores {
        redis: Some(&redis),
        rls: None,
    };
    let limits = Limits::with_stores(config.clone(), "r", stores, Default::default());
    assert!(limits.shared.is_none(), "nothing to share");
    assert!(limits.reusable(&config, stores), "kept by a reload");
}
