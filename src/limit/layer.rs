//! [`LimitLayer`]: asks [`Limits`] for a decision before the inner service runs, answers a
//! refusal early, and carries the slot in the response body to its last byte.

use crate::limit::rls::Descriptors;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http_body_util::BodyExt;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::concurrency::Slot;
use crate::client_addr::ClientAddr;
use crate::limit::config::QuotaUnit;
use crate::limit::decide::{Deciding, Decision, Notes};
use crate::limit::pace::{PacedBody, Pacer};
use crate::limit::quota::QuotaBody;
use crate::limit::rls::ServiceCost;
use crate::limit::tenant::{self, Class};
use crate::limit::{Charge, ClientKey, LimitError, RateLimitService, SlotBody};
use crate::telemetry::RouteMetrics;
use crate::{BoxError, Limits, Request, Response};

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
        let verified = req.extensions().get::<crate::identity::Verified>();
        let key = ClientKey::of(
            &limits.config.key,
            req.headers(),
            req.extensions().get::<ClientAddr>(),
            verified,
        );
        let key = match tenant::classify(&limits.config, req.headers(), verified) {
            Class::Limited(class) => key.in_class(class),
            // Named service identities meet no rate and no concurrency limit (pacing only).
            Class::Exempt => {
                let notes = Notes::new(Arc::from(tenant::EXEMPT_CLASS));
                notes.count(&self.metrics, "exempt", "passed");
                let pace = self.paced(key, &notes);
                return LimitFuture::calling(self.inner.call(req), None, notes, pace);
            }
        };
        let mut notes = limits.notes(&key);
        let rls = limits.rls.as_ref().filter(|_| limits.shared.is_none());
        let rls = rls.map(|rls| {
            let entries = super::rls::entries(
                &limits.config.descriptors,
                (self.metrics.name(), &key),
                req.headers(),
                req.extensions().get::<crate::identity::Verified>(),
            );
            (rls.clone(), entries)
        });
        if let Err(error) = self.charge(key, &mut notes, &mut req, rls.as_ref()) {
            return LimitFuture::Refused { error: Some(error) };
        }
        let pace = self.paced(key, &notes);
        let decision = match (&limits.shared, rls) {
            (Some(shared), _) => Decision::Later(Box::pin(Arc::clone(limits).decide_shared(
                Arc::clone(shared),
                (key, notes),
                Arc::clone(&self.metrics),
            ))),
            (None, Some((rls, entries))) => {
                Decision::Later(Box::pin(Arc::clone(limits).decide_rls(
                    rls,
                    entries,
                    (key, notes),
                    Arc::clone(&self.metrics),
                )))
            }
            (None, None) => limits.decide_local(key, notes, &self.metrics, true),
        };
        match decision {
            Decision::Go(slot, notes) => {
                let slot = share_with_tunnel(&mut req, slot);
                LimitFuture::calling(self.inner.call(req), slot, notes, pace)
            }
            Decision::Refuse(error) => LimitFuture::Refused { error: Some(error) },
            Decision::Later(deciding) => {
                // The inner service is taken now, as tower asks of one called after
                // `poll_ready`; the clone stays for the next request.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                LimitFuture::Deciding {
                    deciding,
                    call: Some((req, inner, pace)),
                }
            }
        }
    }
}

/// A request's pace bucket: which, in whose buckets, counted where.
#[derive(Debug)]
pub struct Paced {
    key: ClientKey,
    pacer: Arc<Pacer>,
    metrics: Arc<RouteMetrics>,
    class: Arc<str>,
}

impl<S> Limit<S> {
    /// The answer's charge, when a quota or the service's `cost.response` counts it: bytes
    /// are checked here and spent by the answer's body; rows are checked and spent by a table
    /// export, which alone counts them (it finds the charge in the request).
    fn charge(
        &self,
        key: ClientKey,
        notes: &mut Notes,
        req: &mut Request,
        rls: Option<&(RateLimitService, Descriptors)>,
    ) -> Result<(), LimitError> {
        let limits = &self.limits;
        let service = rls.and_then(|(rls, entries)| {
            let cost = limits.config.cost;
            Some(Arc::new(ServiceCost::new(
                rls.clone(),
                entries.clone(),
                cost.response?,
                cost.every,
            )))
        });
        if limits.quotas.is_none() && service.is_none() {
            return Ok(());
        }
        let charge = Charge {
            quotas: limits.quotas.clone(),
            service,
            key,
            metrics: Arc::clone(&self.metrics),
            class: Arc::clone(&notes.class),
            report_only: limits.config.report_only,
        };
        if charge.counts(QuotaUnit::Bytes) {
            charge.admit(QuotaUnit::Bytes)?;
            notes.bytes = Some(charge.clone());
        }
        if charge.counts(QuotaUnit::Rows) {
            req.extensions_mut().insert(charge);
        }
        Ok(())
    }

    /// The pace of a request by `key` (none on a report-only route: it only says what it
    /// would refuse).
    fn paced(&self, key: ClientKey, notes: &Notes) -> Option<Paced> {
        let limits = &self.limits;
        let pacer = limits
            .pacer
            .as_ref()
            .filter(|_| !limits.config.report_only)?;
        Some(Paced {
            key: pacer.scope(key),
            pacer: Arc::clone(pacer),
            metrics: Arc::clone(&self.metrics),
            class: Arc::clone(&notes.class),
        })
    }
}

impl Paced {
    fn body(self, body: crate::Body) -> crate::Body {
        let (metrics, class) = (self.metrics, self.class);
        // Counted once per response that had to wait.
        let waited = Box::new(move || metrics.limit("pace", "paced", &class));
        PacedBody::new(body, self.pacer, self.key, waited).boxed()
    }
}

/// An upgrade request's slot, shared with the tunnel it may become, which holds it while it
/// lives: a WebSocket counts against the route's concurrency limit until it closes, not only
/// until its `101` (whose empty body would free the slot at once).
pub(super) fn share_with_tunnel(req: &mut Request, slot: Option<Slot>) -> Option<Slot> {
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
            call: Option<(Request, S, Option<Paced>)>,
        },
        /// The route's answer on its way.
        Calling {
            #[pin]
            answer: S::Future,
            slot: Option<Slot>,
            notes: Option<Notes>,
            pace: Option<Paced>,
        },
    }
}

impl<S: Service<Request>> LimitFuture<S> {
    fn calling(answer: S::Future, slot: Option<Slot>, notes: Notes, pace: Option<Paced>) -> Self {
        Self::Calling {
            answer,
            slot,
            notes: Some(notes),
            pace,
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
                    let (req, mut inner, pace) = call.take().expect("polled after completion");
                    match decided {
                        Ok((slot, notes)) => {
                            let mut req = req;
                            let slot = share_with_tunnel(&mut req, slot);
                            let answer = inner.call(req);
                            self.set(Self::calling(answer, slot, notes, pace));
                        }
                        Err(error) => return Poll::Ready(Err(Box::new(error))),
                    }
                }
                LimitProj::Calling {
                    answer,
                    slot,
                    notes,
                    pace,
                } => {
                    let mut response = ready!(answer.poll(cx))?;
                    if let Some(mut notes) = notes.take() {
                        let bytes = notes.bytes.take();
                        notes.apply(&mut response);
                        // Innermost: the bytes are spent as they leave the backend, before
                        // any pacing.
                        if let Some(charge) = bytes {
                            response = response.map(|body| QuotaBody::new(body, charge).boxed());
                        }
                    }
                    // Paced inside the slot: a paced body holds its slot while it waits.
                    if let Some(pace) = pace.take() {
                        response = response.map(|body| pace.body(body));
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
