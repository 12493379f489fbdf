use std::task::Waker;

use http_body_util::BodyExt;

use super::*;

fn pieces() -> Vec<Bytes> {
    vec![
        Bytes::from(vec![b'a'; 40_000]),
        Bytes::new(),
        Bytes::from_static(b"]"),
    ]
}

fn poll(body: &mut HeldBody) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
    Pin::new(body).poll_frame(&mut Context::from_waker(Waker::noop()))
}

fn data(polled: Poll<Option<Result<Frame<Bytes>, BoxError>>>) -> Bytes {
    match polled {
        Poll::Ready(Some(Ok(frame))) => frame.into_data().expect("data"),
        other => panic!("expected a data frame, got {other:?}"),
    }
}

#[tokio::test]
async fn frames_are_bounded_exact_and_end_with_the_last() {
    let budget = HeldBudget::new(1 << 20, 1 << 20);
    for allowance in [Some(32), None] {
        let allowance = match allowance {
            Some(kib) => Some(budget.reserve(None, kib).await.expect("room")),
            None => None,
        };
        let mut body = HeldBody::new(&budget, pieces(), allowance, Sending::default());
        assert_eq!(body.size_hint().exact(), Some(40_001));
        let mut got = Vec::new();
        while let Some(frame) = body.frame().await {
            // Dropped at once: written.
            got.push(frame.expect("data").into_data().expect("data").len());
        }
        assert_eq!(got, vec![16_384, 16_384, 7_232, 1]);
        assert!(body.is_end_stream());
    }
}

#[tokio::test]
async fn copies_in_flight_stay_within_the_allowance_and_keep_the_page_listed() {
    let budget = HeldBudget::new(1 << 20, 1 << 20);
    let allowance = budget.reserve(None, 32).await.expect("room");
    let mut body = HeldBody::new(&budget, pieces(), Some(allowance), Sending::default());
    let first = data(poll(&mut body));
    let second = data(poll(&mut body));
    assert!(
        poll(&mut body).is_pending(),
        "two frames in flight use the allowance"
    );
    drop(first);
    let third = data(poll(&mut body));
    assert_eq!(third.len(), 7_232);
    drop(second);
    let last = data(poll(&mut body));
    assert!(matches!(poll(&mut body), Poll::Ready(None)));
    drop(body);
    assert_eq!(budget.listed(), 1, "listed while copies are unwritten");
    assert_eq!(budget.available_kib(), 1024 - 32, "the allowance is held");
    drop((third, last));
    assert_eq!(budget.listed(), 0);
    assert_eq!(budget.available_kib(), 1024);
}

#[tokio::test]
async fn a_cut_page_drops_its_pieces_closes_http1_and_fails_when_asked() {
    let budget = HeldBudget::new(1 << 20, 1 << 20);
    let closed = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&closed);
    let close = Some(Closer(Arc::new(move || flag.store(true, Ordering::SeqCst))));
    let owner = Bytes::from(vec![b'x'; 100_000]);
    let allowance = budget.reserve(None, 32).await.expect("room");
    let mut body = HeldBody::new(
        &budget,
        vec![owner.slice(..)],
        Some(allowance),
        Sending { close },
    );
    assert_ne!(
        body.page.stalled_since(),
        0,
        "stalled until hyper first asks"
    );
    let first = data(poll(&mut body));
    assert_eq!(first.len(), FRAME);
    assert_ne!(body.page.stalled_since(), 0, "a copy waits to be written");
    body.page.cut();
    assert!(
        closed.load(Ordering::SeqCst),
        "HTTP/1: the connection is closed"
    );
    assert!(
        lock(&body.page.pieces).is_empty(),
        "the page's pieces are gone"
    );
    assert!(!body.is_end_stream(), "a cut page did not end");
    assert!(body.frame().await.expect("an error").is_err());
    assert_eq!(
        budget.available_kib(),
        1024,
        "the allowance is given back at the cut"
    );
    drop((first, body));
    assert_eq!(budget.listed(), 0);
}

#[test]
fn a_page_with_nothing_left_is_not_stalled() {
    assert!(!stalled_enough(0, 10_000));
    assert!(stalled_enough(1, 1_001));
    assert!(!stalled_enough(1, 1_000));
}
