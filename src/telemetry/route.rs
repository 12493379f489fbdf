//! One route's metric handles ([`RouteMetrics`]), resolved when the route is built so that a
//! request never looks a label set up.

use std::sync::{Arc, OnceLock};

use http::StatusCode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::{
    CursorLabels, LimitLabels, ProtectionLabels, ReportLabels, RequestLabels, RouteLabels,
};

/// Status codes 100 to 599 each get a slot.
pub(super) const STATUS_SLOTS: usize = 500;

/// A table route's export counters.
#[derive(Debug, Clone, Default)]
pub(crate) struct ExportCounters {
    /// Rows read (`pagegate_export_rows_total`).
    pub(crate) rows: Counter,
    /// Chunks that ended at `chunk_bytes` (`pagegate_export_chunks_cut_total`).
    pub(crate) cut_chunks: Counter,
}

/// One route's metric handles, resolved when the route is built.
#[derive(Debug)]
pub struct RouteMetrics {
    pub(super) name: Arc<str>,
    /// Request durations by status class (`1xx` to `5xx`).
    pub(super) durations: [prometheus_client::metrics::histogram::Histogram; 5],
    pub(super) response_bytes: Counter,
    pub(super) request_bytes: Counter,
    pub(super) export_rows: Family<RouteLabels, Counter>,
    pub(super) export_chunks_cut: Family<RouteLabels, Counter>,
    pub(super) requests: Family<RequestLabels, Counter>,
    /// A counter per status, resolved from the family the first time the status is seen.
    pub(super) statuses: Box<[OnceLock<Counter>]>,
    pub(super) cut_items: Option<Counter>,
    pub(super) cut_bytes: Option<Counter>,
    pub(super) order_violations: Option<Counter>,
    pub(super) protections: Family<ProtectionLabels, Counter>,
    pub(super) limits: Family<LimitLabels, Counter>,
    pub(super) limit_evictions: Counter,
    pub(super) reported: Family<ReportLabels, Counter>,
    pub(super) cursor_failures: Family<CursorLabels, Counter>,
}

impl RouteMetrics {
    /// The route's name (`-` for the default policy).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Counts an answer.
    pub fn answered(&self, status: StatusCode) {
        let slot = usize::from(status.as_u16())
            .checked_sub(100)
            .and_then(|i| self.statuses.get(i));
        let labels = |status| RequestLabels {
            route: self.name.to_string(),
            status,
        };
        match slot {
            Some(slot) => slot
                .get_or_init(|| {
                    self.requests
                        .get_or_create(&labels(status.as_u16()))
                        .clone()
                })
                .inc(),
            // 600 to 999 (a backend's, outside RFC 9110's range): one series, `status="0"`,
            // so a backend cannot add a series per code.
            None => self.requests.get_or_create(&labels(0)).inc(),
        };
    }

    /// Records a response whose body ended (or failed) `elapsed` after its request's head, with
    /// `bytes` of body sent.
    pub fn finished(&self, status: StatusCode, elapsed: std::time::Duration, bytes: u64) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.durations[class].observe(elapsed.as_secs_f64());
        self.response_bytes.inc_by(bytes);
    }

    /// The counters of a table route's export (created for export paths only).
    pub(crate) fn export(&self) -> ExportCounters {
        let route = RouteLabels {
            route: self.name.to_string(),
        };
        ExportCounters {
            rows: self.export_rows.get_or_create(&route).clone(),
            cut_chunks: self.export_chunks_cut.get_or_create(&route).clone(),
        }
    }

    /// Counts `n` keys batched shared rates forgot at `max_clients`.
    pub(crate) fn limit_evicted(&self, n: u64) {
        if n > 0 {
            self.limit_evictions.inc_by(n);
        }
    }

    /// The counter of request body bytes relayed upstream.
    pub(crate) fn request_bytes(&self) -> Counter {
        self.request_bytes.clone()
    }

    /// Counts a list response cut because of too many items.
    pub fn cut_items(&self) {
        if let Some(counter) = &self.cut_items {
            counter.inc();
        }
    }

    /// Counts a list response cut at `max_bytes`.
    pub fn cut_bytes(&self) {
        if let Some(counter) = &self.cut_bytes {
            counter.inc();
        }
    }

    /// Counts a protection that refused this route's request (`reason`, see docs/limits.md).
    pub fn protection(&self, reason: &'static str) {
        self.protections
            .get_or_create(&ProtectionLabels { reason })
            .inc();
    }

    /// Counts a decision of one of the route's limits: `refused`, `reported` (would have
    /// refused, report-only mode), or for `limit="redis"` `fallback` / `refused` while Redis
    /// cannot answer.
    pub fn limit(&self, limit: &'static str, decision: &'static str, tenant_class: &str) {
        self.limits
            .get_or_create(&LimitLabels {
                route: self.name.to_string(),
                limit,
                decision,
                tenant_class: tenant_class.to_owned(),
            })
            .inc();
    }

    /// Counts what a list policy in report-only mode would have done (`what`, see docs/configuration.md).
    pub fn reported(&self, what: &'static str) {
        self.reported
            .get_or_create(&ReportLabels {
                route: self.name.to_string(),
                what,
            })
            .inc();
    }

    /// Counts a cursor refused for `reason` ([`crate::cursor::CursorError::reason`]).
    pub fn cursor_failed(&self, reason: &'static str) {
        self.cursor_failures
            .get_or_create(&CursorLabels {
                route: self.name.to_string(),
                reason,
            })
            .inc();
    }

    /// Counts a backend that broke the key order.
    pub fn order_violation(&self) {
        if let Some(counter) = &self.order_violations {
            counter.inc();
        }
    }
}
