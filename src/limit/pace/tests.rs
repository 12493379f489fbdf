//! Paced bodies under tokio's paused clock: bytes wait for their bucket, large frames go out
//! in pieces, trailers and waits of the inner body pass, and the buckets are scoped.

use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::{PacedBody, Pacer};
use crate::body::scripted::{Scripted, Step};
use crate::limit::ClientKey;
use crate::limit::config::{Pace, PaceScope};
use crate::limit::rate::KeyCap;

fn pacer(bytes_per_second: u32, per: PaceScope) -> Arc<Pacer> {
    let pace = Pace {
        bytes_per_second: NonZeroU32::new(bytes_per_second).expect("non-zero"),
        per,
    };
    let cap = KeyCap::detached(NonZeroUsize::new(1000).expect("non-zero"));
    Arc::new(Pacer::new(pace, &cap))
}

fn paced(pacer: &Arc<Pacer>, key: u128, steps: Vec<Step>, waits: &Arc<AtomicUsize>) -> PacedBody {
    let body = Scripted::new(steps).map_err(Into::into).boxed();
    let waits = Arc::clone(waits);
    let on_wait = Box::new(move || {
        waits.fetch_add(1, Ordering::Relaxed);
    });
    PacedBody::new(body, Arc::clone(pacer), ClientKey(key, key, 0), on_wait)
}

/// Each data frame's length and when it came, in seconds since `start`.
async fn frames(body: PacedBody, start: Instant) -> (Vec<(usize, f64)>, bool) {
    let mut body = std::pin::pin!(body);
    let mut seen = Vec::new();
    let mut trailers = false;
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("frame");
        if frame.is_trailers() {
            trailers = true;
        } else if let Ok(data) = frame.into_data() {
            seen.push((data.len(), start.elapsed().as_secs_f64()));
        }
    }
    (seen, trailers)
}

fn kib(n: usize) -> Step {
    Step::Bytes(Bytes::from(vec![b'x'; n]))
}

#[tokio::test(start_paused = true)]
async fn bytes_wait_for_their_bucket_and_large_frames_go_in_pieces() {
    let pacer = pacer(1000, PaceScope::Route);
    let waits = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let body = paced(
        &pacer,
        1,
        vec![kib(1000), kib(2500), Step::Trailers],
        &waits,
    );
    let (seen, trailers) = frames(body, start).await;
    let lengths: Vec<usize> = seen.iter().map(|s| s.0).collect();
    assert_eq!(
        lengths,
        [1000, 1000, 1000, 500],
        "a second's bytes at most per frame"
    );
    // A second of burst, then 1000 bytes a second.
    for ((_, at), want) in seen.iter().zip([0.0, 1.0, 2.0, 2.5]) {
        assert!(
            (at - want).abs() < 0.01,
            "frame at {at} s, want {want} s: {seen:?}"
        );
    }
    assert!(trailers, "trailers pass");
    assert_eq!(
        waits.load(Ordering::Relaxed),
        1,
        "one response that waited, counted once"
    );
}

#[tokio::test(start_paused = true)]
async fn an_inner_wait_passes_and_spends_no_time_of_the_bucket() {
    let pacer = pacer(1000, PaceScope::Route);
    let waits = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let steps = vec![kib(500), Step::Wait(Duration::from_secs(3)), kib(1000)];
    let (seen, _) = frames(paced(&pacer, 1, steps, &waits), start).await;
    // The bucket refilled while the backend was quiet: the second frame goes at once.
    assert!((seen[1].1 - 3.0).abs() < 0.01, "{seen:?}");
    assert_eq!(waits.load(Ordering::Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn keyed_buckets_are_one_per_key_and_a_route_bucket_is_shared() {
    for (per, want) in [(PaceScope::Key, 0.0), (PaceScope::Route, 1.0)] {
        let pacer = pacer(1000, per);
        let waits = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let first = paced(&pacer, 1, vec![kib(1000)], &waits);
        let second = paced(&pacer, 2, vec![kib(1000)], &waits);
        let ((a, _), (b, _)) = tokio::join!(frames(first, start), frames(second, start));
        let last = a[0].1.max(b[0].1);
        assert!(
            (last - want).abs() < 0.01,
            "{per:?}: the second key's bytes at {last} s"
        );
    }
    // `per: client` spends from the address's bucket whatever the key.
    let pacer = pacer(1000, PaceScope::Client);
    let (one, other) = (ClientKey(1, 7, 0), ClientKey(2, 7, 0));
    assert_eq!(pacer.scope(one), pacer.scope(other));
}

#[tokio::test(start_paused = true)]
async fn forgotten_buckets_are_full_ones() {
    let pacer = pacer(1000, PaceScope::Key);
    let waits = Arc::new(AtomicUsize::new(0));
    for key in 0..10 {
        let _ = frames(paced(&pacer, key, vec![kib(10)], &waits), Instant::now()).await;
    }
    assert_eq!(pacer.len(), 10);
    tokio::time::advance(Duration::from_secs(2)).await;
    pacer.housekeeping();
    assert_eq!(
        pacer.len(),
        0,
        "full again: nothing lost by forgetting them"
    );
}

#[tokio::test(start_paused = true)]
async fn at_the_cap_a_new_key_wakes_the_housekeeping_at_most_once_a_second() {
    use futures_util::FutureExt as _;
    let pace = Pace {
        bytes_per_second: NonZeroU32::new(1000).expect("non-zero"),
        per: PaceScope::Key,
    };
    let cap = KeyCap::detached(NonZeroUsize::new(2).expect("n"));
    let pacer = Pacer::new(pace, &cap);
    let woken = || cap.tidy.notify.notified().now_or_never().is_some();
    let key = |k| ClientKey(k, k, 0);
    assert_eq!(pacer.spend(&key(0), 1000), Ok(1000));
    assert_eq!(pacer.spend(&key(1), 1000), Ok(1000));
    assert!(!woken(), "below the cap");
    // The map is full: new keys share one bucket; the housekeeping is woken once.
    assert_eq!(pacer.spend(&key(2), 1000), Ok(1000));
    assert!(woken());
    assert!(pacer.spend(&key(3), 1000).is_err(), "shared, not a bypass");
    assert!(!woken(), "not again within a second");
    assert_eq!(
        (pacer.len(), cap.overflow.get()),
        (2, 2),
        "two spends on the shared bucket"
    );
    // Once the first two are full again, the next newcomer wakes the housekeeping, whose pass
    // forgets them, and the one after it has a bucket of its own.
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(pacer.spend(&key(4), 1), Ok(1));
    assert!(woken());
    pacer.housekeeping();
    assert_eq!(pacer.len(), 0);
    assert_eq!(pacer.spend(&key(5), 1000), Ok(1000), "a bucket of its own");
    assert_eq!(pacer.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn fast_paces_run_at_their_rate() {
    // governor keeps a cell's period in whole nanoseconds: a byte a cell would run 512 MiB/s
    // at 1e9 B/s. Three seconds' bytes take two (the first second is the burst).
    let block = Bytes::from(vec![b'x'; 1 << 20]);
    for rate in [(512u32 << 20) + 12_345, 4095 << 20, 3_000_000] {
        let pacer = pacer(rate, PaceScope::Route);
        let waits = Arc::new(AtomicUsize::new(0));
        let total = u64::from(rate) * 3;
        let mut steps: Vec<Step> = (0..total >> 20)
            .map(|_| Step::Bytes(block.clone()))
            .collect();
        let rest = usize::try_from(total % (1 << 20)).expect("small");
        steps.push(Step::Bytes(block.slice(..rest)));
        let start = Instant::now();
        let mut body = std::pin::pin!(paced(&pacer, 1, steps, &waits));
        let mut sent = 0u64;
        while let Some(frame) = body.frame().await {
            sent += frame
                .expect("frame")
                .into_data()
                .map_or(0, |d| d.len() as u64);
        }
        assert_eq!(sent, total);
        let took = start.elapsed().as_secs_f64();
        assert!(
            (took - 2.0).abs() < 0.01,
            "{rate} B/s: {took} s for 3 s of bytes"
        );
    }
}
