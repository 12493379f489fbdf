//! Scripted bodies for tests: frames, `Pending`s and trailers in a fixed order.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame};

/// One step of a scripted body.
pub(crate) enum Step {
    Data(&'static str),
    /// A data frame of these bytes.
    Bytes(Bytes),
    /// Not ready: wakes itself after this long.
    Wait(Duration),
    Trailers,
}

pub(crate) struct Scripted {
    steps: VecDeque<Step>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Scripted {
    pub(crate) fn new(steps: Vec<Step>) -> Self {
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
                Some(Step::Bytes(bytes)) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
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
