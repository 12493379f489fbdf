//! Scripted bodies: frames, `Pending`s and trailers in a fixed order.

use std::time::Duration;

use http_body_util::BodyExt;

use super::*;

use super::scripted::{Scripted, Step};

#[tokio::test(start_paused = true)]
async fn pauses_shorter_than_the_timeout_pass_with_trailers() {
    let steps = vec![
        Step::Data("a"),
        Step::Wait(Duration::from_millis(900)),
        Step::Data("b"),
        Step::Wait(Duration::from_millis(900)),
        Step::Trailers,
    ];
    let collected = IdleTimeout::new(Scripted::new(steps), Duration::from_secs(1))
        .collect()
        .await
        .expect("no timeout: each pause is below 1 s even though they add up to more");
    assert_eq!(collected.trailers().expect("trailers")["x-checksum"], "abc");
    assert_eq!(&collected.to_bytes()[..], b"ab");
}

#[tokio::test(start_paused = true)]
async fn a_pause_longer_than_the_timeout_fails_the_body() {
    let steps = vec![
        Step::Data("a"),
        Step::Wait(Duration::from_secs(5)),
        Step::Data("never"),
    ];
    let mut body = std::pin::pin!(IdleTimeout::new(
        Scripted::new(steps),
        Duration::from_secs(1)
    ));
    let first = body.frame().await.expect("frame").expect("data");
    assert_eq!(first.into_data().expect("data"), "a");
    let started = tokio::time::Instant::now();
    let error = body
        .frame()
        .await
        .expect("an error frame")
        .expect_err("timed out");
    assert_eq!(error.to_string(), "body idle for more than 1s");
    assert_eq!(started.elapsed(), Duration::from_secs(1));
}

#[test]
fn bytes_that_grew_are_held_in_no_more_memory_than_they_need() {
    use bytes::{BufMut, BytesMut};
    let mut out = BytesMut::with_capacity(1024);
    out.put_slice(&[b'x'; 1500]);
    assert!(out.capacity() >= 2048, "the buffer doubled as it filled");
    let held = super::trimmed(out).try_into_mut().expect("one owner");
    assert_eq!((held.len(), held.capacity()), (1500, 1500));
    // Sized for a Content-Length the body did not fill.
    let mut out = BytesMut::with_capacity(1 << 20);
    out.put_slice(b"[]");
    assert_eq!(
        super::trimmed(out)
            .try_into_mut()
            .expect("one owner")
            .capacity(),
        2
    );
    // With an eighth or less to spare it is kept as it is.
    let mut out = BytesMut::with_capacity(1100);
    out.put_slice(&[b'y'; 1000]);
    let held = super::trimmed(out).try_into_mut().expect("one owner");
    assert_eq!(held.capacity(), 1100);
    // A page built in a `String` that doubled.
    let mut page = String::with_capacity(1024);
    page.push_str(&"z".repeat(1500));
    let held = super::trimmed_vec(page.into_bytes()).try_into_mut();
    assert_eq!(held.expect("one owner").capacity(), 1500);
}

#[test]
fn a_held_page_never_allocates_past_its_bound() {
    let max = 10_000_000;
    let mut buf = Vec::with_capacity(64 * 1024);
    let frame = vec![b'x'; 16 * 1024];
    let mut taken = 0;
    while buf.len() < max {
        taken += super::append_capped(&mut buf, &frame, max);
        assert!(buf.capacity() <= max, "capacity {}", buf.capacity());
    }
    assert_eq!((taken, buf.len()), (max, max));
    assert_eq!(
        super::append_capped(&mut buf, &frame, max),
        0,
        "nothing past the bound"
    );
}
