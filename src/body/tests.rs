//! Scripted bodies: frames, `Pending`s and trailers in a fixed order.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame};
use http_body_util::BodyExt;

use super::*;

/// One step of a scripted body.
enum Step {
    Data(&'static str),
    /// Not ready: wakes itself after this long.
    Wait(Duration),
    Trailers,
}

struct Scripted {
    steps: VecDeque<Step>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Scripted {
    fn new(steps: Vec<Step>) -> Self {
        Self {
            steps: steps.into(),
            sleep: None,
        }
    }
}

impl HttpBody for Scripted {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        loop {
            if let Some(sleep) = self.sleep.as_mut() {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.sleep = None;
            }
            return match self.steps.pop_front() {
                None => Poll::Ready(None),
                Some(Step::Data(s)) => {
                    Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(s.as_bytes())))))
                }
                Some(Step::Trailers) => {
                    let mut trailers = http::HeaderMap::new();
                    trailers.insert("x-checksum", http::HeaderValue::from_static("abc"));
                    Poll::Ready(Some(Ok(Frame::trailers(trailers))))
                }
                Some(Step::Wait(d)) => {
                    self.sleep = Some(Box::pin(tokio::time::sleep(d)));
                    continue;
                }
            };
        }
    }
}

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
