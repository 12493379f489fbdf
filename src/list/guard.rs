//! The list guard: no list response through pagegate exceeds its cap, whatever the backend sends.
//!
//! On a list route, a successful GET response is held — at most `max_bytes`, the only buffering
//! pagegate does — while a byte-level [`Scanner`] finds the item boundaries of the list. Holding
//! the page is what lets the response head say what happened to the body: response headers
//! leave before the body, so a `Link` to the next page or a truncation notice can only be
//! written once the page's end is known.
//!
//! * More items than the page size, or more bytes than `max_bytes`: the body is cut after the
//!   last whole item that fits, the JSON is closed, `Pagegate-Truncated` says why, and the
//!   upstream connection is dropped rather than drained or pooled.
//! * Keyset routes ask the backend for one item more than the page size; when it comes, it is
//!   dropped and its presence proves a next page exists: `Link: <…?cursor=…>; rel="next"`.
//!   The last page has no `next` link, so no client fetches an empty page.
//! * Keys must strictly follow the route's order; a backend that breaks it would make cursors
//!   skip rows, so the response becomes a 502 instead.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::value::RawValue;

use tower::{Layer, Service};

use crate::body::IdleTimeoutError;
use crate::client_addr::ClientAddr;
use crate::cursor::{CursorCodec, MAX_KEY_JSON_LEN, key_json_len};
use crate::list::config::{ListPolicy, OnInvalid};
use crate::list::pagination::{KeysetPlan, ListRoute, PagePlan, ReportPlan};
use crate::list::scan::{DEFAULT_MAX_DEPTH, Event, Scanner};
use crate::telemetry::{Outcome, RouteMetrics};
use crate::upstream::UpstreamError;
use crate::{BoxError, Request, Response};

mod budget;
mod held;
mod keys;
mod report;

pub(crate) use budget::Reservation;
pub use budget::{HeldBudget, HoldError};
use held::IN_FLIGHT;
pub(crate) use held::{HeldBody, Sending};
pub(crate) use report::ReportBody;

/// Response header on a cut list: `items` (more items than the page) or `bytes` (over `max_bytes`).
pub(crate) const TRUNCATED_HEADER: &str = "pagegate-truncated";

/// Why a list response could not be relayed (502).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    /// The response is not JSON (or not the configured shape) and the route refuses that.
    #[error("the backend's list response is not the JSON list this route expects")]
    NotJson,
    /// Not JSON and larger than the page bound: it cannot be relayed whole.
    #[error(
        "the backend's list response is not JSON and exceeds this route's {max_bytes}-byte bound"
    )]
    NotJsonTooLarge {
        /// `max_bytes`.
        max_bytes: u64,
    },
    /// Not one whole item fits in `max_bytes`.
    #[error("not one whole item of the backend's list fits in this route's {max_bytes}-byte bound")]
    ItemTooLarge {
        /// `max_bytes`.
        max_bytes: u64,
    },
    /// An item lacks its key field.
    #[error("item {index} of the backend's list has no usable key at {field}")]
    MissingKey {
        /// 0-based item index.
        index: usize,
        /// JSON pointer.
        field: String,
    },
    /// Keys are not in the route's order.
    #[error(
        "the backend returned item {index} out of key order; refusing to mint a cursor that would skip rows"
    )]
    OrderViolation {
        /// 0-based index of the offending item.
        index: usize,
    },
    /// The last item's key is too long to fit in a cursor.
    #[error("the key of item {index} is longer than a cursor can carry ({max} bytes of JSON)")]
    KeyTooLong {
        /// 0-based item index.
        index: usize,
        /// [`crate::cursor::MAX_KEY_JSON_LEN`].
        max: usize,
    },
    /// The upstream body failed before the page was complete.
    #[error("the backend's list response ended abnormally")]
    Body,
    /// The body ended before its JSON document did.
    #[error("the backend's list response ended before its JSON document did")]
    Unfinished,
}

/// Holds, scans and cuts one list route's responses; see the module docs.
#[derive(Debug, Clone)]
pub(crate) struct ListGuardLayer {
    route: Arc<ListRoute>,
    metrics: Arc<RouteMetrics>,
    room: Arc<HeldBudget>,
}

impl ListGuardLayer {
    /// The guard of one list route, reporting into the route's `metrics` and holding pages
    /// within `room`.
    pub(crate) fn new(
        route: Arc<ListRoute>,
        metrics: Arc<RouteMetrics>,
        room: Arc<HeldBudget>,
    ) -> Self {
        Self {
            route,
            metrics,
            room,
        }
    }
}

impl<S> Layer<S> for ListGuardLayer {
    type Service = ListGuard<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ListGuard {
            inner,
            route: Arc::clone(&self.route),
            metrics: Arc::clone(&self.metrics),
            room: Arc::clone(&self.room),
        }
    }
}

/// The service of [`ListGuardLayer`].
#[derive(Debug, Clone)]
pub(crate) struct ListGuard<S> {
    inner: S,
    route: Arc<ListRoute>,
    metrics: Arc<RouteMetrics>,
    room: Arc<HeldBudget>,
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<Response, BoxError>> + Send>>;

impl<S> Service<Request> for ListGuard<S>
where
    S: Service<Request, Response = Response, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = BoxError;
    type Future = futures_util::future::Either<S::Future, BoxFuture>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        use futures_util::future::Either;
        // The plan is taken out: nothing after this layer reads it. Requests without one
        // (methods other than GET and HEAD) pass untouched.
        if let Some(report) = req.extensions_mut().remove::<ReportPlan>() {
            // Report-only: the answer streams through untouched, scanned as it passes.
            let route = Arc::clone(&self.route);
            let metrics = Arc::clone(&self.metrics);
            return Either::Right(Box::pin(self.inner.call(req).map(move |result| {
                result.map(|response| {
                    let status = response.status();
                    if !status.is_success() || status == StatusCode::NO_CONTENT {
                        return response;
                    }
                    if response.headers().contains_key(header::CONTENT_ENCODING) {
                        // The request went through as written, compression asked for
                        // included: the scanner cannot read this one. Counted, so the
                        // reports say how much they could not see.
                        metrics.reported("unchecked_encoded");
                        return response;
                    }
                    response.map(|body| {
                        ReportBody::new(body, &route.policy, report.page_size, metrics).boxed()
                    })
                })
            })));
        }
        let Some(plan) = req.extensions_mut().remove::<PagePlan>() else {
            return Either::Left(self.inner.call(req));
        };
        if req.method() == Method::HEAD {
            // No body to hold: keep the head from promising what a GET would not return (the
            // backend's length and, on keyset routes, its own pagination links).
            let keyset = plan.keyset.is_some();
            return Either::Right(Box::pin(self.inner.call(req).map(move |result| {
                result.map(|mut response| {
                    if response.status().is_success() {
                        response.headers_mut().remove(header::CONTENT_LENGTH);
                        if keyset {
                            response.headers_mut().remove(header::LINK);
                        }
                    }
                    response
                })
            })));
        }
        // The scanner reads bytes as sent; compressed bodies would be opaque to it.
        req.headers_mut().insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        let route = Arc::clone(&self.route);
        let metrics = Arc::clone(&self.metrics);
        let room = Arc::clone(&self.room);
        let client = req.extensions().get::<ClientAddr>().map(ClientAddr::key);
        // How a held page's stream is cut (see `held`): an HTTP/1 connection is closed; an
        // HTTP/2 stream alone is reset.
        let sending = Sending {
            close: (req.version() != http::Version::HTTP_2)
                .then(|| {
                    req.extensions()
                        .get::<ClientAddr>()
                        .and_then(ClientAddr::closer)
                })
                .flatten(),
        };
        // A combinator around the inner future, not an async block holding it (async blocks
        // over a generic `S::Future` trip rustc's "Send is not general enough",
        // rust-lang/rust#110338); the async block only sees the response.
        Either::Right(Box::pin(self.inner.call(req).then(
            move |result| async move {
                let response = result?;
                // Only a successful response with a body is a page; the rest passes untouched.
                let status = response.status();
                if !status.is_success() || status == StatusCode::NO_CONTENT {
                    return Ok(response);
                }
                // Reserve the page's bytes once the head says a page is coming; give up with a
                // 503 rather than let held pages grow without bound. Dropping the response
                // closes the upstream exchange.
                // The page's bytes and the allowance for its copies in flight (see `held`).
                let need = route.policy.max_bytes.div_ceil(1024) + (IN_FLIGHT / 1024) as u64;
                let need = room.fit(u32::try_from(need).unwrap_or(u32::MAX));
                let reservation = room.reserve(client, need).await?;
                let (parts, pieces, allowance) =
                    guard(response, &route, &plan, &metrics, reservation).await?;
                let body = HeldBody::new(&room, pieces, allowance, sending);
                Ok(http::Response::from_parts(parts, body.boxed()))
            },
        )))
    }
}

/// A page to send: the client's head, and the body's pieces (slices of the held bytes).
type Page = (http::response::Parts, Vec<Bytes>);

/// Turns the backend's response into the client's.
async fn guard(
    response: Response,
    route: &ListRoute,
    plan: &PagePlan,
    metrics: &RouteMetrics,
    mut reservation: Reservation,
) -> Result<(http::response::Parts, Vec<Bytes>, Option<Reservation>), BoxError> {
    let policy = &route.policy;
    let result = match hold(response, policy, plan).await {
        Ok(mut held) => {
            // Keep only what the held bytes need, and an allowance for the copies in flight of
            // at most the page itself; the rest returns to the budget.
            let kib = u32::try_from(held.bytes.len().div_ceil(1024)).unwrap_or(u32::MAX);
            let allowance = kib
                .min((IN_FLIGHT / 1024) as u32)
                .min(reservation.kib().saturating_sub(kib));
            reservation.shrink(kib.saturating_add(allowance));
            let allowance = reservation.split(allowance);
            // The reservation lives as long as the held bytes do: every slice of the page the
            // response is made of keeps it, so it is released when the last byte has been
            // written to the client's socket (or the client is gone), not when hyper has
            // merely taken the frames into its write queue.
            held.bytes = held::reserved(held.bytes, reservation);
            finish(held, policy, route.codec.as_deref(), plan, metrics)
                .map(|(parts, pieces)| (parts, pieces, allowance))
        }
        Err(error) => Err(error),
    };
    match result {
        Ok(page) => Ok(page),
        Err(error) => {
            // Logged where it becomes an answer (crate::proxy::rescue), counted here.
            if let Some(GuardError::OrderViolation { .. }) = error.downcast_ref() {
                metrics.order_violation();
            }
            Err(error)
        }
    }
}

/// Why holding stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The body ended and the document is complete.
    Complete,
    /// More items arrived than may be relayed.
    Items,
    /// `max_bytes` was reached first.
    Bytes,
}

/// A held page: the bytes, the item spans found, and why holding stopped.
struct Held {
    parts: http::response::Parts,
    bytes: Bytes,
    items: Vec<(usize, usize)>,
    root_open: Option<usize>,
    items_close: Option<usize>,
    root_end: Option<usize>,
    stop: Stop,
    /// `Some` when the body is not the expected JSON: relay it unchanged.
    raw: bool,
}

/// How many items a page may relay (`client`), and how many the backend may send before it is
/// known to ignore `limit` (`allowed`: one more on keyset routes, the probe).
fn item_limits(policy: &ListPolicy, plan: &PagePlan) -> (usize, usize) {
    let client = usize::try_from(plan.page_size.min(policy.max_items)).unwrap_or(usize::MAX);
    (
        client,
        client.saturating_add(usize::from(plan.keyset.is_some())),
    )
}

async fn hold(response: Response, policy: &ListPolicy, plan: &PagePlan) -> Result<Held, BoxError> {
    let (parts, mut body) = response.into_parts();
    let max_bytes = usize::try_from(policy.max_bytes).unwrap_or(usize::MAX);
    let (_, allowed) = item_limits(policy, plan);
    // Presize from Content-Length when the backend sends one, so growing never copies the page.
    let announced = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    let mut buf = BytesMut::with_capacity(announced.unwrap_or(64 * 1024).min(max_bytes));
    let mut scanner = Scanner::new(policy.items.clone(), DEFAULT_MAX_DEPTH);
    let mut held = HeldState::default();
    let mut stop = None;
    let mut raw = false;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| body_error(&e))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers of a list response carry nothing the client needs
        };
        let room = max_bytes - buf.len();
        let fits = data.len().min(room);
        buf.extend_from_slice(&data[..fits]);
        if !raw {
            match scanner.feed(&data[..fits], |event| held.on_event(event, allowed)) {
                Ok(_) if held.over => {
                    stop = Some(Stop::Items);
                    break;
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(%error, "list response is not the expected JSON");
                    raw = true;
                }
            }
        }
        // Bytes beyond the bound: only whitespace after a complete document may be dropped.
        let rest = &data[fits..];
        let droppable = !raw && held.root_end.is_some() && rest.iter().all(u8::is_ascii_whitespace);
        if !rest.is_empty() && !droppable {
            stop = Some(Stop::Bytes);
            break;
        }
    }
    if stop.is_none() && !raw && scanner.finish().is_err() {
        // A document that began and did not end — a backend that closed mid-array — is never
        // relayed as a clean response, whatever `on_invalid` says.
        if held.root_open.is_some() {
            return Err(GuardError::Unfinished.into());
        }
        raw = true;
    }
    if raw {
        if policy.on_invalid == OnInvalid::Reject {
            return Err(GuardError::NotJson.into());
        }
        if stop == Some(Stop::Bytes) {
            return Err(GuardError::NotJsonTooLarge {
                max_bytes: policy.max_bytes,
            }
            .into());
        }
    }
    // Leaving here drops the upstream body: an unfinished exchange closes its connection.
    Ok(Held {
        parts,
        bytes: buf.freeze(),
        items: held.items,
        root_open: held.root_open,
        items_close: held.items_close,
        root_end: held.root_end,
        stop: stop.unwrap_or(Stop::Complete),
        raw,
    })
}

#[derive(Default)]
struct HeldState {
    items: Vec<(usize, usize)>,
    root_open: Option<usize>,
    items_close: Option<usize>,
    root_end: Option<usize>,
    over: bool,
}

impl HeldState {
    fn on_event(&mut self, event: Event, allowed: usize) -> std::ops::ControlFlow<()> {
        let at = |offset: u64| usize::try_from(offset).unwrap_or(usize::MAX);
        match event {
            Event::RootOpen { offset, .. } => self.root_open = Some(at(offset)),
            Event::ItemsOpen { .. } => {}
            Event::Item { start, end } => {
                if self.items.len() == allowed {
                    self.over = true;
                    return std::ops::ControlFlow::Break(());
                }
                self.items.push((at(start), at(end)));
            }
            Event::ItemsClose { offset } => self.items_close = Some(at(offset)),
            Event::RootClose { end } => self.root_end = Some(at(end)),
        }
        std::ops::ControlFlow::Continue(())
    }
}

fn body_error(error: &BoxError) -> BoxError {
    if let Some(idle) = error.downcast_ref::<IdleTimeoutError>() {
        return UpstreamError::Timeout {
            upstream: "list".to_owned(),
            stage: "send the next part of the list",
            after: idle.0,
        }
        .into();
    }
    tracing::debug!(%error, "upstream list body failed");
    GuardError::Body.into()
}

/// Builds the client's response from a held page; `codec` signs the next cursor.
fn finish(
    held: Held,
    policy: &ListPolicy,
    codec: Option<&CursorCodec>,
    plan: &PagePlan,
    metrics: &RouteMetrics,
) -> Result<Page, BoxError> {
    let Held {
        mut parts,
        bytes,
        items,
        root_open,
        items_close,
        root_end,
        stop,
        raw,
    } = held;
    if plan.keyset.is_some() {
        // pagegate owns pagination links on keyset routes, on every page including the last.
        parts.headers.remove(header::LINK);
    }
    if raw {
        return Ok(relay(parts, bytes));
    }
    let (client_items, _) = item_limits(policy, plan);
    // Items kept: the page, and for a byte cut only those wholly inside the held bytes.
    let kept = items.len().min(client_items);
    let more = items.len() > kept || stop != Stop::Complete;
    if stop == Stop::Bytes && kept == 0 {
        return Err(GuardError::ItemTooLarge {
            max_bytes: policy.max_bytes,
        }
        .into());
    }
    let cursor = match &plan.keyset {
        Some(keyset) => next_cursor(keyset, codec, &bytes, &items, kept, more)?,
        None => None,
    };
    // (A complete document never holds more than `allowed` items: the scan stops at the next.)
    let truncated = match stop {
        // The probe arrived whole before the byte bound: the list is complete, and with no
        // envelope nothing after it was lost.
        Stop::Bytes if items.len() > client_items && policy.items.0.is_empty() => None,
        Stop::Bytes => Some("bytes"),
        Stop::Items => Some("items"),
        Stop::Complete => None,
    };
    if let Some(reason) = truncated {
        match stop {
            Stop::Items => metrics.cut_items(),
            _ => metrics.cut_bytes(),
        }
        parts
            .headers
            .insert(TRUNCATED_HEADER, HeaderValue::from_static(reason));
        parts.extensions.insert(Outcome::Truncated);
    }
    let envelope_field = plan
        .keyset
        .as_ref()
        .and_then(|k| k.policy.next_cursor_field.clone());
    if kept == items.len() && stop == Stop::Complete && envelope_field.is_none() && cursor.is_none()
    {
        return Ok(relay(parts, bytes));
    }

    // Assemble the body from slices of the held bytes: nothing is copied but the closers.
    let mut pieces: Vec<Bytes> = Vec::with_capacity(6);
    let mut from = 0;
    if let (Some(field), Some(open)) = (&envelope_field, root_open) {
        pieces.push(bytes.slice(..=open));
        let value = cursor
            .as_deref()
            .map_or_else(|| "null".to_owned(), |c| format!("\"{c}\""));
        pieces.push(Bytes::from(format!("\"{field}\":{value},")));
        from = open + 1;
    }
    match (stop, items_close, root_end) {
        (Stop::Complete, Some(close), Some(end)) if kept < items.len() => {
            // Drop the probe item (and anything after it), keep the rest of the document.
            let cut = kept.checked_sub(1).map_or(items[0].0, |last| items[last].1);
            pieces.push(bytes.slice(from..cut));
            pieces.push(bytes.slice(close..end));
        }
        (Stop::Complete, _, _) => pieces.push(bytes.slice(from..)),
        _ => {
            // Cut: end after the last kept item and close the list and its envelope.
            let cut = kept.checked_sub(1).map_or(from, |last| items[last].1);
            pieces.push(bytes.slice(from..cut));
            pieces.push(Bytes::from(format!(
                "]{}",
                "}".repeat(policy.items.0.len())
            )));
        }
    }
    let length: usize = pieces.iter().map(Bytes::len).sum();
    for name in [header::CONTENT_LENGTH, header::ETAG] {
        parts.headers.remove(name);
    }
    parts.headers.remove("content-md5");
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if let Some(keyset) = &plan.keyset
        && let Some(link) = cursor.as_ref().and_then(|c| {
            HeaderValue::from_str(&format!("<{}{c}>; rel=\"next\"", keyset.next_base)).ok()
        })
    {
        parts.headers.insert(header::LINK, link);
    }
    Ok((parts, pieces))
}

/// Relays held bytes unchanged, with a `Content-Length` that is true for them (trailing
/// whitespace past the bound may have been dropped; then the validators go too).
fn relay(mut parts: http::response::Parts, bytes: Bytes) -> Page {
    let length = HeaderValue::from(bytes.len());
    if parts.headers.get(header::CONTENT_LENGTH) != Some(&length) {
        parts.headers.remove(header::ETAG);
        parts.headers.remove("content-md5");
    }
    parts.headers.insert(header::CONTENT_LENGTH, length);
    (parts, vec![bytes])
}

/// Checks the keys of the kept items (and the probe item) and mints the next cursor.
fn next_cursor(
    keyset: &KeysetPlan,
    codec: Option<&CursorCodec>,
    bytes: &Bytes,
    items: &[(usize, usize)],
    kept: usize,
    more: bool,
) -> Result<Option<String>, BoxError> {
    let policy = &keyset.policy;
    let mut previous: Option<Vec<Box<RawValue>>> = keyset.after.clone();
    let mut last = None;
    for (index, &(start, end)) in items.iter().enumerate().take(kept + 1) {
        let Some(key) = keys::extract(&bytes[start..end], &policy.keys) else {
            return Err(GuardError::MissingKey {
                index,
                field: policy
                    .keys
                    .iter()
                    .map(|k| k.field.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            }
            .into());
        };
        if let Some(prev) = &previous
            && !keys::strictly_after(prev, &key, policy.order)
        {
            return Err(GuardError::OrderViolation { index }.into());
        }
        if index + 1 == kept {
            last = Some(key.clone());
        }
        previous = Some(key);
    }
    Ok(match (more, last) {
        (true, Some(last)) => {
            let refs: Vec<&RawValue> = last.iter().map(AsRef::as_ref).collect();
            if key_json_len(&refs) > MAX_KEY_JSON_LEN {
                return Err(GuardError::KeyTooLong {
                    index: kept - 1,
                    max: MAX_KEY_JSON_LEN,
                }
                .into());
            }
            let Some(codec) = codec else {
                return Err("a keyset route has no cursor codec".into());
            };
            Some(codec.encode(policy.route_id, keyset.binding, &refs, SystemTime::now()))
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests;
