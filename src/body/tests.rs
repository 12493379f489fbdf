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
