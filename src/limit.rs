//! Rate and concurrency limits per route ([`LimitLayer`]), keyed per client ([`ClientKey`]):
//! GCRA request rates per client and per route ([`rate`]), requests in flight per client and
//! per route, held until the answer's body ends ([`concurrency`]), the IETF `RateLimit-Policy`
//! and `RateLimit` fields on every answer of a rate-limited route, and a report-only mode that
//! evaluates, counts and reports but lets everything through.
//!
//! A refused request never reaches the backend: the layer returns early with a [`LimitError`],
//! which the route's rescue answers 429 (the client's limits, any rate) or 503 (the route's
//! total in flight) with `Retry-After`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::HeaderValue;
use http_body_util::BodyExt;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::client::ClientAddr;
use crate::config::{LimitsConfig, Rate};
use crate::telemetry::RouteMetrics;
use crate::{BoxError, Request, Response};

mod concurrency;
mod key;
pub(crate) mod rate;

pub use concurrency::{Full, NoSlot, SlotBody};
pub use key::ClientKey;
pub use rate::{Fields, Refused, Which};

use concurrency::{Slot, Slots};
use rate::Rates;

/// `Retry-After` of a concurrency refusal, in seconds: when a slot frees is unknown (an export
/// may stream for minutes), so this is an estimate that keeps retry loops slow (5 seconds).
pub const CONCURRENCY_RETRY_AFTER: u64 = 5;

/// The response header that says, in report-only mode, what a limit would have done:
/// `429 rate_per_client`, comma-separated when several would have refused.
pub const WOULD_REFUSE: &str = "pagegate-would-refuse";

/// How often the per-client rate limiters forget clients whose bucket is full (10 seconds).
const HOUSEKEEPING: Duration = Duration::from_secs(10);

/// Why a route's limits refused a request.
#[derive(Debug, Clone)]
pub struct LimitError {
    /// What refused it.
    pub refusal: Refusal,
    /// The rate fields to send with the refusal (rate-limited routes only).
    pub fields: Option<Fields>,
}

/// What refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A request rate.
    Rate(Refused),
    /// No free slot.
    Concurrency(NoSlot),
}

impl std::fmt::Display for LimitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let per = |rate: &Rate| humantime::format_duration(rate.per).to_string();
        match self.refusal {
            Refusal::Rate(r) => match r.which {
                Which::PerClient => write!(
                    f,
                    "too many requests from this client: this route allows {} per {}; retry in {} s",
                    r.rate.requests,
                    per(&r.rate),
                    r.retry_after
                ),
                Which::Total => write!(
                    f,
                    "too many requests to this route from all clients: it allows {} per {}; retry in {} s",
                    r.rate.requests,
                    per(&r.rate),
                    r.retry_after
                ),
            },
            Refusal::Concurrency(NoSlot::Full(full)) => match full {
                Full::PerClient(n) => write!(
                    f,
                    "this client already has {n} {} in flight on this route, its limit: wait for {} to finish",
                    if n == 1 { "request" } else { "requests" },
                    if n == 1 { "it" } else { "one" }
                ),
                Full::Total(n) => write!(
                    f,
                    "this route already has {n} {} in flight, its limit: retry later",
                    if n == 1 { "request" } else { "requests" }
                ),
            },
            Refusal::Concurrency(NoSlot::Waited(full, waited)) => write!(
                f,
                "no free slot within {} ({} of {} in flight)",
                humantime::format_duration(waited),
                match full {
                    Full::PerClient(_) => "this client's limit",
                    Full::Total(_) => "this route's limit",
                },
                match full {
                    Full::PerClient(n) | Full::Total(n) => n,
                }
            ),
        }
    }
}

impl std::error::Error for LimitError {}

impl LimitError {
    /// Whether the route's total in flight refused it (503: the route is busy), rather than the
    /// client's own limits or a rate (429).
    pub fn route_busy(&self) -> bool {
        matches!(
            self.refusal,
            Refusal::Concurrency(NoSlot::Full(Full::Total(_)) | NoSlot::Waited(Full::Total(_), _))
        )
    }

    /// `Retry-After`, in seconds.
    pub fn retry_after(&self) -> u64 {
        match self.refusal {
            Refusal::Rate(r) => r.retry_after,
            Refusal::Concurrency(_) => CONCURRENCY_RETRY_AFTER,
        }
    }

    /// The metric and report name of the limit.
    pub fn limit(&self) -> &'static str {
        match self.refusal {
            Refusal::Rate(r) => match r.which {
                Which::PerClient => "rate_per_client",
                Which::Total => "rate_total",
            },
            Refusal::Concurrency(NoSlot::Full(full) | NoSlot::Waited(full, _)) => match full {
                Full::PerClient(_) => "concurrency_per_client",
                Full::Total(_) => "concurrency_total",
            },
        }
    }

    fn status(&self) -> u16 {
        if self.route_busy() { 503 } else { 429 }
    }
}

/// A route's limiters, built from its [`LimitsConfig`]; a new generation reuses them while the
/// route's name and limits are unchanged, so buckets and slots survive a reload.
#[derive(Debug)]
pub struct Limits {
    config: LimitsConfig,
    rates: Option<Rates>,
    slots: Option<Arc<Slots>>,
}

impl Limits {
    /// Builds the limiters, and starts their housekeeping when a runtime is running.
    pub fn new(config: LimitsConfig) -> Arc<Self> {
        let limits = Arc::new(Self {
            rates: Rates::new(
                config.rate_per_client,
                config.rate_total,
                config.max_clients,
            ),
            slots: Slots::new(
                config.concurrency_per_client.map(|n| n.get()),
                config.concurrency_total.map(|n| n.get()),
                config.queue,
            ),
            config,
        });
        if limits.config.rate_per_client.is_some()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(housekeeping(Arc::downgrade(&limits)));
        }
        limits
    }

    /// The config these limiters were built from.
    pub fn config(&self) -> &LimitsConfig {
        &self.config
    }

    /// Clients whose rate state is kept now (the memory bound's subject).
    pub fn clients(&self) -> usize {
        self.rates.as_ref().map_or(0, Rates::clients)
    }

    /// Forgets clients whose buckets are full (also done on a timer).
    pub fn housekeep(&self) {
        if let Some(rates) = &self.rates {
            rates.housekeep();
        }
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> u32 {
        self.slots.as_ref().map_or(0, |s| s.in_flight())
    }
}

/// Forgets full buckets every [`HOUSEKEEPING`] while the limiters are alive.
async fn housekeeping(limits: Weak<Limits>) {
    let mut tick = tokio::time::interval(HOUSEKEEPING);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(limits) = limits.upgrade() else {
            return;
        };
        limits.housekeep();
    }
}

/// The layer of a route's limits.
#[derive(Debug, Clone)]
pub struct LimitLayer {
    limits: Arc<Limits>,
    metrics: Arc<RouteMetrics>,
}

impl LimitLayer {
    /// Limits a route with `limits`, counting in the route's `metrics`.
    pub fn new(limits: Arc<Limits>, metrics: Arc<RouteMetrics>) -> Self {
        Self { limits, metrics }
    }
}

impl<S> Layer<S> for LimitLayer {
    type Service = Limit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Limit {
            inner,
            limits: Arc::clone(&self.limits),
            metrics: Arc::clone(&self.metrics),
        }
    }
}

/// The service of [`LimitLayer`].
#[derive(Debug, Clone)]
pub struct Limit<S> {
    inner: S,
    limits: Arc<Limits>,
    metrics: Arc<RouteMetrics>,
}

/// What the answer carries back: rate fields and report-only findings.
#[derive(Debug, Default)]
struct Notes {
    fields: Option<Fields>,
    would_refuse: Vec<&'static str>,
}

impl Notes {
    fn refused(&mut self, error: &LimitError, metrics: &RouteMetrics, report_only: bool) -> bool {
        metrics.limit(error.limit(), report_only);
        if report_only {
            self.would_refuse.push(if error.status() == 503 {
                "503 "
            } else {
                "429 "
            });
            self.would_refuse.push(error.limit());
        }
        !report_only
    }

    fn apply(self, response: &mut Response) {
        let headers = response.headers_mut();
        if let Some(fields) = self.fields {
            headers.insert("ratelimit-policy", fields.policy);
            headers.insert("ratelimit", fields.state);
        }
        if !self.would_refuse.is_empty() {
            let text = self
                .would_refuse
                .chunks(2)
                .map(|pair| pair.concat())
                .collect::<Vec<_>>()
                .join(", ");
            if let Ok(value) = HeaderValue::from_str(&text) {
                headers.insert(WOULD_REFUSE, value);
            }
        }
    }
}

impl<S> Service<Request> for Limit<S>
where
    S: Service<Request, Response = Response, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response;
    type Error = BoxError;
    type Future = LimitFuture<S>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let limits = &self.limits;
        let report_only = limits.config.report_only;
        let key = ClientKey::of(
            &limits.config.key,
            req.headers(),
            req.extensions().get::<ClientAddr>(),
        );
        let mut notes = Notes::default();
        if let Some(rates) = &limits.rates {
            let (verdict, fields) = rates.check(&key);
            if let Err(refused) = verdict {
                let error = LimitError {
                    refusal: Refusal::Rate(refused),
                    fields: Some(fields.clone()),
                };
                if notes.refused(&error, &self.metrics, report_only) {
                    return LimitFuture::refused(error);
                }
            }
            notes.fields = Some(fields);
        }
        let slot = match &limits.slots {
            None => None,
            Some(slots) => match slots.try_take(key) {
                Ok(slot) => Some(slot),
                Err(full) if !report_only && slots.queues() => {
                    // Waits in the queue; the inner service is taken now, as tower asks of a
                    // service called after `poll_ready`.
                    let clone = self.inner.clone();
                    let inner = std::mem::replace(&mut self.inner, clone);
                    return LimitFuture::waiting(
                        Box::pin(Arc::clone(slots).wait(key, full)),
                        req,
                        inner,
                        notes,
                        Arc::clone(&self.metrics),
                    );
                }
                Err(full) => {
                    let error = LimitError {
                        refusal: Refusal::Concurrency(NoSlot::Full(full)),
                        fields: notes.fields.clone(),
                    };
                    if notes.refused(&error, &self.metrics, report_only) {
                        return LimitFuture::refused(error);
                    }
                    None
                }
            },
        };
        LimitFuture::calling(self.inner.call(req), slot, notes)
    }
}

type Wait = Pin<Box<dyn Future<Output = Result<Slot, NoSlot>> + Send>>;

pin_project! {
    /// The future of [`Limit`]: refused at once, waiting in the queue, or calling the route.
    // pin-project-lite takes no doc comments on variant fields; the variants say what they hold.
    #[allow(missing_docs)]
    #[project = LimitProj]
    pub enum LimitFuture<S: Service<Request>> {
        /// Refused before anything was sent.
        Refused { error: Option<LimitError> },
        /// Waiting for a slot; the request and the service to call with it.
        Waiting {
            wait: Wait,
            call: Option<(Request, S, Notes, Arc<RouteMetrics>)>,
        },
        /// The route's answer on its way.
        Calling {
            #[pin]
            answer: S::Future,
            slot: Option<Slot>,
            notes: Option<Notes>,
        },
    }
}

impl<S: Service<Request>> LimitFuture<S> {
    fn refused(error: LimitError) -> Self {
        Self::Refused { error: Some(error) }
    }

    fn waiting(
        wait: Wait,
        req: Request,
        inner: S,
        notes: Notes,
        metrics: Arc<RouteMetrics>,
    ) -> Self {
        Self::Waiting {
            wait,
            call: Some((req, inner, notes, metrics)),
        }
    }

    fn calling(answer: S::Future, slot: Option<Slot>, notes: Notes) -> Self {
        Self::Calling {
            answer,
            slot,
            notes: Some(notes),
        }
    }
}

impl<S> Future for LimitFuture<S>
where
    S: Service<Request, Response = Response, Error = BoxError>,
{
    type Output = Result<Response, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project() {
                LimitProj::Refused { error } => {
                    let error = error.take().expect("polled after completion");
                    return Poll::Ready(Err(Box::new(error)));
                }
                LimitProj::Waiting { wait, call } => {
                    let waited = ready!(wait.as_mut().poll(cx));
                    let (req, mut inner, notes, metrics) =
                        call.take().expect("polled after completion");
                    match waited {
                        Ok(slot) => {
                            let answer = inner.call(req);
                            self.set(Self::calling(answer, Some(slot), notes));
                        }
                        Err(no_slot) => {
                            let error = LimitError {
                                refusal: Refusal::Concurrency(no_slot),
                                fields: notes.fields,
                            };
                            metrics.limit(error.limit(), false);
                            return Poll::Ready(Err(Box::new(error)));
                        }
                    }
                }
                LimitProj::Calling {
                    answer,
                    slot,
                    notes,
                } => {
                    let mut response = ready!(answer.poll(cx))?;
                    if let Some(notes) = notes.take() {
                        notes.apply(&mut response);
                    }
                    if let Some(slot) = slot.take() {
                        response = response.map(|body| SlotBody::new(body, slot).boxed());
                    }
                    return Poll::Ready(Ok(response));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
