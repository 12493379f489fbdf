//! The quota levels on tokio's paused clock: spending, refilling evenly over the window,
//! refusing at zero with when to come back, cutting what does not fit, and the memory bound;
//! a charge whose quota and rate-limit service count different units.

use std::num::NonZeroUsize;
use std::time::Duration;

use super::Quotas;
use crate::limit::ClientKey;
use crate::limit::config::{OnExceed, QuotaConfig, QuotaUnit};
use crate::limit::rate::KeyCap;

fn quotas(amount: u64, per: Duration, cap: usize) -> Quotas {
    capped(
        amount,
        per,
        &KeyCap::detached(NonZeroUsize::new(cap).expect("cap")),
    )
}

fn capped(amount: u64, per: Duration, cap: &KeyCap) -> Quotas {
    let config = QuotaConfig {
        amount,
        unit: QuotaUnit::Rows,
        per,
        on_exceed: OnExceed::Finish,
    };
    Quotas::new(config, cap)
}

fn key(n: u128) -> ClientKey {
    ClientKey(n, n, 0)
}

#[tokio::test(start_paused = true)]
async fn a_finished_answer_may_go_below_zero_and_the_level_refills_evenly() {
    let q = quotas(100, Duration::from_secs(100), 10);
    assert!(q.admit(&key(1)).is_ok());
    assert_eq!(
        q.spend(&key(1), 150, false),
        150,
        "finish spends past the quota"
    );
    let spent = q.admit(&key(1)).expect_err("spent");
    // 50 below zero at 1 a second: above zero again after 51 s.
    assert_eq!(spent.retry_after, 51);
    assert!(q.admit(&key(2)).is_ok(), "another key has its own level");
    tokio::time::advance(Duration::from_secs(50)).await;
    assert!(q.admit(&key(1)).is_err());
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(q.admit(&key(1)).is_ok());
    // Refilled up to the amount, never beyond it.
    tokio::time::advance(Duration::from_secs(1000)).await;
    assert_eq!(q.spend(&key(1), 100, true), 100);
    tokio::time::advance(Duration::from_secs(1000)).await;
    assert!(
        q.spend(&key(1), 101, true) < 101,
        "at most `amount` at once"
    );
}

#[tokio::test(start_paused = true)]
async fn a_cut_ends_the_answer_and_the_level() {
    let q = quotas(10, Duration::from_secs(60), 10);
    assert_eq!(q.spend(&key(1), 6, true), 6);
    assert_eq!(q.spend(&key(1), 6, true), 4, "4 left: 6 do not fit");
    let spent = q.admit(&key(1)).expect_err("the cut spent what was left");
    assert_eq!(spent.retry_after, 6, "one row's refill: 6 s");
}

#[tokio::test(start_paused = true)]
async fn keys_are_bounded_and_full_levels_forgotten() {
    use futures_util::FutureExt as _;
    let cap = KeyCap::detached(NonZeroUsize::new(2).expect("cap"));
    let q = capped(10, Duration::from_secs(10), &cap);
    assert_eq!(q.spend(&key(1), 10, false), 10);
    assert_eq!(q.spend(&key(2), 10, false), 10);
    // At the cap, a new key shares one overflow level: still limited, never unbounded; its
    // uses are counted.
    assert_eq!(q.spend(&key(3), 10, false), 10);
    assert!(q.admit(&key(4)).is_err(), "the overflow level is spent");
    assert_eq!((q.clients(), cap.overflow.get()), (2, 2));
    assert!(
        cap.tidy.notify.notified().now_or_never().is_some(),
        "a newcomer at the cap wakes the housekeeping"
    );
    tokio::time::advance(Duration::from_secs(10)).await;
    q.housekeep();
    assert_eq!(q.clients(), 0, "full again: forgotten, losing nothing");
    assert!(q.admit(&key(1)).is_ok());
}

/// A charge with a row quota that cuts and a rate-limit service owed the answer's `owed`.
fn charge(
    quota_rows: u64,
    owed: QuotaUnit,
) -> (
    super::Charge,
    std::sync::Arc<crate::limit::rls::ServiceCost>,
) {
    charge_in(QuotaUnit::Rows, quota_rows, owed)
}

/// A charge with a quota of `amount` `unit`s that cuts and a rate-limit service owed the
/// answer's `owed`.
fn charge_in(
    unit: QuotaUnit,
    amount: u64,
    owed: QuotaUnit,
) -> (
    super::Charge,
    std::sync::Arc<crate::limit::rls::ServiceCost>,
) {
    let config = QuotaConfig {
        amount,
        unit,
        per: Duration::from_secs(3600),
        on_exceed: OnExceed::Cut,
    };
    let rls = crate::limit::RateLimitService::new(crate::limit::config::RlsConfig {
        address: "http://127.0.0.1:9".to_owned(),
        tls: None,
        domain: "d".to_owned(),
        timeout: Duration::from_millis(20),
    })
    .expect("a lazy client");
    let service = std::sync::Arc::new(crate::limit::rls::ServiceCost::new(
        rls,
        vec![Vec::new()],
        owed,
        Duration::from_secs(3600),
    ));
    let charge = super::Charge {
        quotas: Some(std::sync::Arc::new(Quotas::new(
            config,
            &KeyCap::detached(NonZeroUsize::new(10).expect("cap")),
        ))),
        service: Some(std::sync::Arc::clone(&service)),
        key: key(1),
        metrics: crate::telemetry::Metrics::default().route("t", false),
        class: std::sync::Arc::from("default"),
        report_only: false,
    };
    (charge, service)
}

#[tokio::test]
async fn each_part_of_a_charge_counts_its_own_unit() {
    let (charge, service) = charge(150, QuotaUnit::Bytes);
    assert!(charge.counts(QuotaUnit::Rows) && charge.counts(QuotaUnit::Bytes));
    // Rows: the quota's, which cuts at the chunk that does not fit; the service is not owed
    // rows.
    assert_eq!(charge.spend(QuotaUnit::Rows, 100), 100);
    assert_eq!(
        charge.spend(QuotaUnit::Rows, 100),
        50,
        "cut: 50 rows were left"
    );
    assert_eq!(service.sent(), 0);
    // Bytes: the service's, which the row quota does not limit.
    assert_eq!(charge.spend(QuotaUnit::Bytes, 4096), 4096);
    assert_eq!(charge.spend(QuotaUnit::Bytes, 10), 10);
    assert_eq!(service.sent(), 4106);
    assert!(charge.admit(QuotaUnit::Bytes).is_ok(), "no byte quota");
    assert!(
        charge.admit(QuotaUnit::Rows).is_err(),
        "the row quota is spent"
    );
}

#[tokio::test]
async fn rows_of_a_chunk_that_is_cut_are_not_owed_to_the_service() {
    let (charge, service) = charge(150, QuotaUnit::Rows);
    assert_eq!(charge.spend(QuotaUnit::Rows, 100), 100);
    assert_eq!(charge.spend(QuotaUnit::Rows, 100), 50, "cut");
    assert_eq!(service.sent(), 100, "the cut chunk was not sent");
}

#[tokio::test]
async fn a_cut_of_the_last_frame_still_ends_in_the_error() {
    use http_body::Body as _;
    use http_body_util::BodyExt as _;
    let (charge, _) = charge_in(QuotaUnit::Bytes, 100, QuotaUnit::Bytes);
    // One frame, and the body says it is at its end with it (as a backend's last frame does).
    let inner = http_body_util::Full::new(bytes::Bytes::from(vec![b'x'; 300]))
        .map_err(|never| -> crate::BoxError { match never {} });
    let mut body = std::pin::pin!(super::body::QuotaBody::new(inner, charge));
    assert_eq!(body.size_hint().exact(), Some(300));
    let frame = body.frame().await.expect("a frame").expect("data");
    assert_eq!(frame.into_data().expect("data").len(), 100);
    assert!(!body.is_end_stream(), "the cut is still owed");
    assert_eq!(body.size_hint().exact(), None, "no longer the inner size");
    let error = body.frame().await.expect("the cut").expect_err("an error");
    assert!(error.is::<crate::body::Truncation>(), "{error}");
    assert!(body.is_end_stream());
}
