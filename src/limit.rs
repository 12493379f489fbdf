//! Rate and concurrency limits per route ([`LimitLayer`]), keyed per client ([`ClientKey`]):
//! GCRA request rates per client and per route (`rate`), requests in flight per client and
//! per route, held until the answer's body ends (`concurrency`), the IETF `RateLimit-Policy`
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

use crate::client_addr::ClientAddr;
use crate::limit::config::{LimitStore, LimitsConfig, OnRedisError, Rate};
use crate::telemetry::RouteMetrics;
use crate::{BoxError, Request, Response};

mod concurrency;
pub(crate) mod config;
mod key;
mod queue;
pub(crate) mod rate;
mod shared;

pub(crate) use concurrency::{Full, NoSlot, SlotBody};
pub(crate) use key::ClientKey;
pub(crate) use rate::{Fields, Refused, Which};
pub(crate) use shared::Redis;

use concurrency::{Slot, Slots};
use rate::Rates;
use shared::Shared;

/// `Retry-After` of a concurrency refusal, in seconds: when a slot frees is unknown (an export
/// may stream for minutes), so this is an estimate that keeps retry loops slow (5 seconds).
pub(crate) const CONCURRENCY_RETRY_AFTER: u64 = 5;

/// The response header that says, in report-only mode, what a limit would have done:
/// `429 rate_per_client`, comma-separated when several would have refused.
pub(crate) const WOULD_REFUSE: &str = "pagegate-would-refuse";

/// How often a request queued for a shared (Redis) slot asks again (50 ms).
const SHARED_QUEUE_POLL: Duration = Duration::from_millis(50);

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
    /// Redis could not answer and the route says `on_redis_error: closed`.
    Unavailable,
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
                Which::PerAddress => write!(
                    f,
                    "too many requests from this address, whatever key it sends: this route allows {} per {}; retry in {} s",
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
            Refusal::Unavailable => write!(
                f,
                "this route's limits are kept in Redis, which cannot answer now: retry shortly"
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
                | Refusal::Unavailable
        )
    }

    /// `Retry-After`, in seconds.
    pub fn retry_after(&self) -> u64 {
        match self.refusal {
            Refusal::Rate(r) => r.retry_after,
            Refusal::Concurrency(_) => CONCURRENCY_RETRY_AFTER,
            Refusal::Unavailable => 1,
        }
    }

    /// The metric and report name of the limit.
    pub fn limit(&self) -> &'static str {
        match self.refusal {
            Refusal::Rate(r) => match r.which {
                Which::PerClient => "rate_per_client",
                Which::PerAddress => "rate_per_address",
                Which::Total => "rate_total",
            },
            Refusal::Concurrency(NoSlot::Full(full) | NoSlot::Waited(full, _)) => match full {
                Full::PerClient(_) => "concurrency_per_client",
                Full::Total(_) => "concurrency_total",
            },
            Refusal::Unavailable => "redis",
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
    /// `store: redis`: the shared limiters (the local ones above are the fallback).
    shared: Option<Arc<Shared>>,
    redis: Option<crate::limit::config::RedisConfig>,
}

impl Limits {
    /// Builds the limiters of route `route`, shared through `redis` when its `store` says so,
    /// and starts their housekeeping when a runtime is running.
    pub fn new(config: LimitsConfig, route: &str, redis: Option<&Redis>) -> Arc<Self> {
        let redis = redis.filter(|_| config.store == LimitStore::Redis);
        let shared = redis.map(|redis| {
            Arc::new(Shared::new(
                redis.clone(),
                route,
                (
                    config.rate_per_client,
                    config.rate_per_address,
                    config.rate_total,
                ),
                (
                    config.concurrency_per_client.map(|n| n.get()),
                    config.concurrency_total.map(|n| n.get()),
                ),
            ))
        });
        let limits = Arc::new(Self {
            shared,
            redis: redis.map(|r| r.config().clone()),
            rates: Rates::new(
                (config.rate_per_client, config.rate_per_address),
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
        if (limits.config.rate_per_client.is_some() || limits.config.rate_per_address.is_some())
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

    /// Whether a new generation may keep these limiters: the same limits, and for shared
    /// ones the same Redis.
    pub fn reusable(&self, config: &LimitsConfig, redis: Option<&Redis>) -> bool {
        let redis = redis
            .filter(|_| config.store == LimitStore::Redis)
            .map(Redis::config);
        &self.config == config && self.redis.as_ref() == redis
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
    would_refuse: Vec<String>,
}

impl Notes {
    /// Counts a refusal; in report-only mode notes it and says to go on (false).
    fn refused(&mut self, error: &LimitError, metrics: &RouteMetrics, report_only: bool) -> bool {
        metrics.limit(
            error.limit(),
            if report_only { "reported" } else { "refused" },
        );
        if report_only {
            self.would_refuse
                .push(format!("{} {}", error.status(), error.limit()));
        }
        !report_only
    }

    fn apply(self, response: &mut Response) {
        let headers = response.headers_mut();
        if let Some(fields) = self.fields {
            headers.insert("ratelimit-policy", fields.policy);
            headers.insert("ratelimit", fields.state);
        }
        if !self.would_refuse.is_empty()
            && let Ok(value) = HeaderValue::from_str(&self.would_refuse.join(", "))
        {
            headers.append(WOULD_REFUSE, value);
        }
    }
}

/// A decision still to be made: a queued wait, or a Redis round trip.
type Deciding = Pin<Box<dyn Future<Output = Result<(Option<Slot>, Notes), LimitError>> + Send>>;

/// What a request's limits decided without waiting.
enum Decision {
    /// Go on, with a slot when the route counts them.
    Go(Option<Slot>, Notes),
    /// Refused.
    Refuse(LimitError),
    /// Wait for the decision.
    Later(Deciding),
}

impl Limits {
    /// Applies a rate verdict: refuses, or notes a report-only refusal and goes on.
    fn rate_verdict(
        &self,
        verdict: Result<(), Refused>,
        fields: Fields,
        notes: &mut Notes,
        metrics: &RouteMetrics,
    ) -> Result<(), LimitError> {
        if let Err(refused) = verdict {
            let error = LimitError {
                refusal: Refusal::Rate(refused),
                fields: Some(fields.clone()),
            };
            if notes.refused(&error, metrics, self.config.report_only) {
                return Err(error);
            }
        }
        notes.fields = Some(fields);
        Ok(())
    }

    /// A full slot limit: wait in the local queue, refuse, or (report-only) go on.
    fn no_slot(
        self: &Arc<Self>,
        key: ClientKey,
        full: Full,
        mut notes: Notes,
        metrics: &Arc<RouteMetrics>,
    ) -> Decision {
        let Some(slots) = self.slots.as_ref() else {
            return Decision::Go(None, notes);
        };
        if !self.config.report_only && slots.queues() {
            let slots = Arc::clone(slots);
            let metrics = Arc::clone(metrics);
            return Decision::Later(Box::pin(async move {
                match slots.wait(key, full).await {
                    Ok(slot) => Ok((Some(slot), notes)),
                    Err(no_slot) => {
                        let error = LimitError {
                            refusal: Refusal::Concurrency(no_slot),
                            fields: notes.fields,
                        };
                        metrics.limit(error.limit(), "refused");
                        Err(error)
                    }
                }
            }));
        }
        let error = LimitError {
            refusal: Refusal::Concurrency(NoSlot::Full(full)),
            fields: notes.fields.clone(),
        };
        if notes.refused(&error, metrics, self.config.report_only) {
            return Decision::Refuse(error);
        }
        Decision::Go(None, notes)
    }

    /// This process's limiters (also the fallback of shared ones under `on_redis_error: open`).
    fn decide_local(
        self: &Arc<Self>,
        key: ClientKey,
        mut notes: Notes,
        metrics: &Arc<RouteMetrics>,
        rate: bool,
    ) -> Decision {
        if rate && let Some(rates) = &self.rates {
            let (verdict, fields) = rates.check(&key);
            if let Err(error) = self.rate_verdict(verdict, fields, &mut notes, metrics) {
                return Decision::Refuse(error);
            }
        }
        match self.slots.as_ref().map(|slots| slots.try_take(key)) {
            None => Decision::Go(None, notes),
            Some(Ok(slot)) => Decision::Go(Some(slot), notes),
            Some(Err(full)) => self.no_slot(key, full, notes, metrics),
        }
    }

    /// Redis could not answer: `open` goes on with the local limiters, `closed` refuses (in
    /// report-only mode: says it would have, and goes on with the local limiters).
    fn redis_failed(&self, notes: &mut Notes, metrics: &RouteMetrics) -> Result<(), LimitError> {
        match self.config.on_redis_error {
            OnRedisError::Open => {
                metrics.limit("redis", "fallback");
                Ok(())
            }
            OnRedisError::Closed => {
                let error = LimitError {
                    refusal: Refusal::Unavailable,
                    fields: notes.fields.clone(),
                };
                if notes.refused(&error, metrics, self.config.report_only) {
                    return Err(error);
                }
                Ok(())
            }
        }
    }

    /// Redis could not answer: `on_redis_error` decides, and with `open` this process's own
    /// limiters take over (its rate too when Redis had not checked it, `rate`).
    async fn shared_failed(
        self: &Arc<Self>,
        key: ClientKey,
        mut notes: Notes,
        metrics: &Arc<RouteMetrics>,
        rate: bool,
    ) -> Result<(Option<Slot>, Notes), LimitError> {
        self.redis_failed(&mut notes, metrics)?;
        match self.decide_local(key, notes, metrics, rate) {
            Decision::Go(slot, notes) => Ok((slot, notes)),
            Decision::Refuse(error) => Err(error),
            Decision::Later(wait) => wait.await,
        }
    }

    /// The shared limiters in Redis.
    async fn decide_shared(
        self: Arc<Self>,
        shared: Arc<Shared>,
        key: ClientKey,
        metrics: Arc<RouteMetrics>,
    ) -> Result<(Option<Slot>, Notes), LimitError> {
        let mut notes = Notes::default();
        let slots = self.slots.is_some();
        // The rate and the first try for a slot in one round trip.
        let answer = shared.take(&key, self.rates.is_some(), slots).await;
        shared.health(&answer);
        let mut first = match answer {
            Ok(taken) => {
                if let Some((verdict, fields)) = taken.rate {
                    self.rate_verdict(verdict, fields, &mut notes, &metrics)?;
                }
                taken.slot
            }
            Err(_) => return self.shared_failed(key, notes, &metrics, true).await,
        };
        if !slots {
            return Ok((None, notes));
        }
        let started = tokio::time::Instant::now();
        // A shared queue is a poll, within this process's queue places.
        let mut queued = None;
        loop {
            let outcome = match first.take() {
                Some(outcome) => outcome,
                // A rate refused in report-only mode took no slot yet; a queued request polls.
                None => {
                    let answer = shared.take(&key, false, true).await;
                    shared.health(&answer);
                    match answer.map(|taken| taken.slot) {
                        Ok(Some(outcome)) => outcome,
                        Ok(None) | Err(_) => {
                            return self.shared_failed(key, notes, &metrics, false).await;
                        }
                    }
                }
            };
            let full = match outcome {
                Ok(lease) => return Ok((Some(Slot::Lease(lease)), notes)),
                Err(full) => full,
            };
            let queue = self.config.queue.filter(|_| !self.config.report_only);
            let mut full = full;
            if queued.is_none()
                && let Some(q) = queue
            {
                match shared.enqueue(q.size.get(), key) {
                    Ok(place) => queued = Some(place),
                    // The client's own waiters fill its share of the queue: over its limit.
                    Err(queue::NoPlace::ClientFull(cap)) => full = Full::PerClient(cap),
                    Err(queue::NoPlace::Full) => {}
                }
            }
            let Some(q) = queue.filter(|_| queued.is_some()) else {
                let error = LimitError {
                    refusal: Refusal::Concurrency(NoSlot::Full(full)),
                    fields: notes.fields.clone(),
                };
                if notes.refused(&error, &metrics, self.config.report_only) {
                    return Err(error);
                }
                return Ok((None, notes));
            };
            let left = q.timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                let error = LimitError {
                    refusal: Refusal::Concurrency(NoSlot::Waited(full, q.timeout)),
                    fields: notes.fields,
                };
                metrics.limit(error.limit(), "refused");
                return Err(error);
            }
            tokio::time::sleep(SHARED_QUEUE_POLL.min(left)).await;
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

    fn call(&mut self, mut req: Request) -> Self::Future {
        let limits = &self.limits;
        let key = ClientKey::of(
            &limits.config.key,
            req.headers(),
            req.extensions().get::<ClientAddr>(),
        );
        let decision = match &limits.shared {
            Some(shared) => Decision::Later(Box::pin(Arc::clone(limits).decide_shared(
                Arc::clone(shared),
                key,
                Arc::clone(&self.metrics),
            ))),
            None => limits.decide_local(key, Notes::default(), &self.metrics, true),
        };
        match decision {
            Decision::Go(slot, notes) => {
                let slot = share_with_tunnel(&mut req, slot);
                LimitFuture::calling(self.inner.call(req), slot, notes)
            }
            Decision::Refuse(error) => LimitFuture::Refused { error: Some(error) },
            Decision::Later(deciding) => {
                // The inner service is taken now, as tower asks of one called after
                // `poll_ready`; the clone stays for the next request.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                LimitFuture::Deciding {
                    deciding,
                    call: Some((req, inner)),
                }
            }
        }
    }
}

/// An upgrade request's slot, shared with the tunnel it may become, which holds it while it
/// lives: a WebSocket counts against the route's concurrency limit until it closes, not only
/// until its `101` (whose empty body would free the slot at once).
fn share_with_tunnel(req: &mut Request, slot: Option<Slot>) -> Option<Slot> {
    let slot = slot?;
    if !req.headers().contains_key(http::header::UPGRADE) {
        return Some(slot);
    }
    let shared = Arc::new(slot);
    req.extensions_mut()
        .insert(crate::client_addr::TunnelHold(Arc::clone(&shared) as _));
    Some(Slot::Shared(shared))
}

pin_project! {
    /// The future of [`Limit`]: refused at once, deciding (a queue, Redis), or calling the
    /// route.
    // pin-project-lite takes no doc comments on variant fields; the variants say what they hold.
    #[allow(missing_docs)]
    #[project = LimitProj]
    pub enum LimitFuture<S: Service<Request>> {
        /// Refused before anything was sent.
        Refused { error: Option<LimitError> },
        /// Deciding; the request and the service to call with it.
        Deciding {
            deciding: Deciding,
            call: Option<(Request, S)>,
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
                LimitProj::Deciding { deciding, call } => {
                    let decided = ready!(deciding.as_mut().poll(cx));
                    let (req, mut inner) = call.take().expect("polled after completion");
                    match decided {
                        Ok((slot, notes)) => {
                            let mut req = req;
                            let slot = share_with_tunnel(&mut req, slot);
                            let answer = inner.call(req);
                            self.set(Self::calling(answer, slot, notes));
                        }
                        Err(error) => return Poll::Ready(Err(Box::new(error))),
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
