//! [`LoggedBody`]: the response body as sent to the client, counted, and logged and measured
//! when it ends, fails or is dropped; a failure is held for one poll so the server flushes
//! what it buffered before it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::StatusCode;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::Instant;

use super::{Entry, Outcome};
use crate::telemetry::{RouteMetrics, TraceCx};
use crate::{Body, BoxError};

/// What the route's metrics keep of a response until its body ends: the duration and bytes.
#[derive(Debug)]
pub(super) struct Measure {
    pub(super) route: Arc<RouteMetrics>,
    pub(super) status: StatusCode,
    pub(super) start: Instant,
    pub(super) bytes: u64,
}

/// The response body as sent to the client: counts bytes, and when the body ends, fails, or is
/// dropped unfinished, records its duration and writes the log entry.
#[derive(Debug)]
pub struct LoggedBody {
    inner: Body,
    measure: Option<Measure>,
    /// Boxed: a request that is not logged carries one pointer, not the whole entry.
    entry: Option<Box<Entry>>,
    /// The server span, ended with the body.
    span: Option<Box<SpanEnd>>,
    /// The body's error, held for one poll: the server first flushes what it buffered of the
    /// frames before it (hyper drops what it has not written once a body fails), so a cut
    /// answer delivers every byte it was allowed.
    held: Option<BoxError>,
}

/// What the server span records when the body ends.
#[derive(Debug)]
pub(super) struct SpanEnd {
    pub(super) cx: TraceCx,
    pub(super) status: StatusCode,
    pub(super) route: Option<Arc<RouteMetrics>>,
    pub(super) outcome: Outcome,
}

impl LoggedBody {
    pub(super) fn new(
        inner: Body,
        measure: Option<Measure>,
        entry: Option<Box<Entry>>,
        span: Option<Box<SpanEnd>>,
    ) -> Self {
        Self {
            inner,
            measure,
            entry,
            span,
            held: None,
        }
    }

    fn finish(&mut self, outcome: Option<Outcome>) {
        if let Some(m) = self.measure.take() {
            m.route.finished(m.status, m.start.elapsed(), m.bytes);
        }
        if let Some(entry) = self.entry.take() {
            entry.write(outcome.unwrap_or(entry.outcome));
        }
        if let Some(span) = self.span.take() {
            let route = span.route.as_ref().map_or("-", |r| r.name());
            let outcome = outcome.unwrap_or(span.outcome);
            span.cx.answered(route, Some(span.status), outcome.as_str());
        }
    }
}

impl HttpBody for LoggedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(error) = self.held.take() {
            return Poll::Ready(Some(Err(error)));
        }
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if let Some(measure) = self.measure.as_mut() {
                        measure.bytes += len;
                    }
                    if let Some(entry) = self.entry.as_mut() {
                        entry.bytes += len;
                    }
                }
                if self.inner.is_end_stream() {
                    self.finish(None);
                }
            }
            Poll::Ready(Some(Err(e))) => {
                let cut = crate::body::Truncation::is_cause(e.as_ref());
                self.finish(Some(if cut {
                    Outcome::Truncated
                } else {
                    Outcome::Aborted
                }));
            }
            Poll::Ready(None) => self.finish(None),
            Poll::Pending => {}
        }
        if let Poll::Ready(Some(Err(error))) = polled {
            self.held = Some(error);
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        // An error still to give is not an end.
        self.held.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        let ended = self.inner.is_end_stream()
            || self
                .entry
                .as_ref()
                .is_some_and(|e| e.bodiless() || e.expected == Some(e.bytes));
        self.finish((!ended).then_some(Outcome::ClientClosed));
    }
}
