//! The list guard in report-only mode (`list.report_only: true`): the response streams through
//! untouched — nothing held, nothing cut — while the scanner counts its items and bytes; what
//! the guard would have done (cut at the page size or `max_bytes`, refuse a body that is not
//! the expected JSON or ends unfinished) is counted in `pagegate_reported_total` and logged,
//! once per response. Response headers have left by then, so no header can say it. A response
//! the backend compressed (the request went through as written, `Accept-Encoding` included)
//! cannot be scanned: it is counted as `unchecked_encoded`.
//!
//! Key-order violations are not checked here: that needs each item's keys, which only a held
//! page gives.

use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Body as HttpBody;
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::list::config::{ListPolicy, OnInvalid};
use crate::list::scan::{DEFAULT_MAX_DEPTH, Event, ScanError, Scanner};
use crate::telemetry::RouteMetrics;

pin_project! {
    /// A list response's body, scanned as it passes; see the module docs.
    pub struct ReportBody<B> {
        #[pin]
        inner: B,
        scanner: Scanner,
        metrics: Arc<RouteMetrics>,
        items: u64,
        bytes: u64,
        page_size: u64,
        max_bytes: u64,
        reject_invalid: bool,
        reported: bool,
    }
}

impl<B> ReportBody<B> {
    pub(crate) fn new(
        inner: B,
        policy: &ListPolicy,
        page_size: u64,
        metrics: Arc<RouteMetrics>,
    ) -> Self {
        Self {
            inner,
            scanner: Scanner::new(policy.items.clone(), DEFAULT_MAX_DEPTH),
            metrics,
            items: 0,
            bytes: 0,
            page_size: page_size.min(policy.max_items),
            max_bytes: policy.max_bytes,
            reject_invalid: policy.on_invalid == OnInvalid::Reject,
            reported: false,
        }
    }
}

/// Counts and logs what the guard would have done, once per response.
fn report(reported: &mut bool, metrics: &RouteMetrics, what: &'static str, detail: &str) {
    if std::mem::replace(reported, true) {
        return;
    }
    metrics.reported(what);
    tracing::info!(route = %metrics.name(), what, detail, "report-only: the list guard would have acted on this response");
}

impl<B> HttpBody for ReportBody<B>
where
    B: HttpBody<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) if !*this.reported => {
                if let Some(data) = frame.data_ref() {
                    *this.bytes += data.len() as u64;
                    let (items, page_size) = (&mut *this.items, *this.page_size);
                    let fed = this.scanner.feed(data, |event| {
                        if let Event::Item { .. } = event {
                            *items += 1;
                            if *items > page_size {
                                return ControlFlow::Break(());
                            }
                        }
                        ControlFlow::Continue(())
                    });
                    if *this.items > *this.page_size {
                        let detail = format!("more than {} items", this.page_size);
                        report(this.reported, this.metrics, "cut_items", &detail);
                    } else if *this.bytes > *this.max_bytes {
                        let detail = format!("more than {} bytes", this.max_bytes);
                        report(this.reported, this.metrics, "cut_bytes", &detail);
                    } else if let Err(error) = fed
                        && *this.reject_invalid
                    {
                        report(this.reported, this.metrics, "invalid", &error.to_string());
                    }
                }
            }
            Poll::Ready(Some(Err(_))) if !*this.reported => {
                report(
                    this.reported,
                    this.metrics,
                    "unfinished",
                    "the backend's body failed",
                );
            }
            Poll::Ready(None) if !*this.reported => match this.scanner.finish() {
                Err(error @ ScanError::UnexpectedEnd { .. }) => {
                    report(
                        this.reported,
                        this.metrics,
                        "unfinished",
                        &error.to_string(),
                    );
                }
                Err(error) if *this.reject_invalid => {
                    report(this.reported, this.metrics, "invalid", &error.to_string());
                }
                _ => {}
            },
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
