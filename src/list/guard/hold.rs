//! Holding a list answer: its bytes are read under `max_bytes` and the held-page budget while
//! the scanner finds its items, until the document ends or a cap is reached.

use bytes::Bytes;
use http::header;
use http_body_util::BodyExt;

use crate::body::IdleTimeoutError;
use crate::list::config::{ListPolicy, OnInvalid};
use crate::list::pagination::PagePlan;
use crate::list::scan::{DEFAULT_MAX_DEPTH, Event, Scanner};
use crate::upstream::UpstreamError;
use crate::{BoxError, GuardError, Response};

/// How long a complete page waits for the rest of its body (whitespace, the last chunk) before
/// it is relayed and the upstream connection closed rather than drained.
const TAIL_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Why holding stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    /// The body ended and the document is complete.
    Complete,
    /// More items arrived than may be relayed.
    Items,
    /// `max_bytes` was reached first.
    Bytes,
}

/// A held page: the bytes, the item spans found, and why holding stopped.
pub(super) struct Held {
    pub(super) parts: http::response::Parts,
    pub(super) bytes: Bytes,
    pub(super) items: Vec<(usize, usize)>,
    pub(super) root_open: Option<usize>,
    pub(super) items_close: Option<usize>,
    pub(super) root_end: Option<usize>,
    pub(super) stop: Stop,
    /// `Some` when the body is not the expected JSON: relay it unchanged.
    pub(super) raw: bool,
}

/// How many items a page may relay (`client`), and how many the backend may send before it is
/// known to ignore `limit` (`allowed`: one more on keyset routes, the probe).
pub(super) fn item_limits(policy: &ListPolicy, plan: &PagePlan) -> (usize, usize) {
    let client = usize::try_from(plan.page_size.min(policy.max_items)).unwrap_or(usize::MAX);
    (
        client,
        client.saturating_add(usize::from(plan.keyset.is_some())),
    )
}

pub(super) async fn hold(
    response: Response,
    policy: &ListPolicy,
    plan: &PagePlan,
) -> Result<Held, BoxError> {
    let (parts, mut body) = response.into_parts();
    refuse_encoded(&parts.headers)?;
    let max_bytes = usize::try_from(policy.max_bytes).unwrap_or(usize::MAX);
    let (_, allowed) = item_limits(policy, plan);
    // Presize from Content-Length when the backend sends one, so growing never copies the page.
    let announced = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    let mut buf: Vec<u8> = Vec::with_capacity(announced.unwrap_or(64 * 1024).min(max_bytes));
    let mut scanner = Scanner::new(policy.items.clone(), DEFAULT_MAX_DEPTH);
    let mut held = HeldState::default();
    let mut stop = None;
    let mut raw = false;
    let mut tail_by = None;
    loop {
        // After a complete document only whitespace and the body's end may come: a backend
        // that trickles it cannot hold the page (and its share of the budget) for long.
        let next = if held.root_end.is_some() && !raw {
            let deadline = *tail_by.get_or_insert_with(|| tokio::time::Instant::now() + TAIL_GRACE);
            match tokio::time::timeout_at(deadline, body.frame()).await {
                Ok(next) => next,
                Err(_) => break,
            }
        } else {
            body.frame().await
        };
        let Some(frame) = next else { break };
        let frame = frame.map_err(|e| body_error(&e))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers of a list response carry nothing the client needs
        };
        let fits = crate::body::append_capped(&mut buf, &data, max_bytes);
        if !raw {
            match scanner.feed(&data[..fits], |event| held.on_event(event, allowed)) {
                Ok(_) if held.over => {
                    stop = Some(Stop::Items);
                    break;
                }
                Ok(_) => {}
                Err(error) => raw = not_expected(&error, plan.keyset.is_some(), held.listed)?,
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
        // Trimmed: the budget keeps a reservation of the page's bytes, not its buffer's.
        bytes: crate::body::trimmed_vec(buf),
        items: held.items,
        root_open: held.root_open,
        items_close: held.items_close,
        root_end: held.root_end,
        stop: stop.unwrap_or(Stop::Complete),
        raw,
    })
}

/// Asked for identity (see the layer), a backend that compresses all the same sends bytes the
/// scanner cannot read: relayed as "not JSON", its items would pass uncounted and its bound
/// would hold compressed bytes. Refused whatever `on_invalid` says.
fn refuse_encoded(headers: &http::HeaderMap) -> Result<(), GuardError> {
    let identity = |value: &&http::HeaderValue| {
        value
            .as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"identity")
    };
    let Some(encoding) = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .find(|value| !identity(value))
    else {
        return Ok(());
    };
    let encoding: String = String::from_utf8_lossy(encoding.as_bytes())
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(32)
        .collect();
    tracing::warn!(%encoding, "the backend compressed a list page: turn compression off for `Accept-Encoding: identity` on this path");
    Err(GuardError::Encoded)
}

/// A body the scanner refused: relayed as another format (`raw`: `Ok(true)`, which
/// `on_invalid` decides on), unless clients would read a list out of it uncounted: that is
/// refused whatever `on_invalid` says. It is so when the list had opened (`listed`) before
/// the scanner stopped — at `NaN`, which Python's `json` writes and reads, or at a second list
/// under the items path. So is, on a keyset route (`keyset`), JSON nested too deep to read:
/// relayed raw, it would carry no next link, and its client would take the list for ended.
/// (A body with no list, such as Go's `{"data":null}` for an empty page, is another format.)
fn not_expected(
    error: &crate::list::scan::ScanError,
    keyset: bool,
    listed: bool,
) -> Result<bool, BoxError> {
    use crate::list::scan::ScanError;
    if listed || matches!(error, ScanError::DuplicateItems { .. }) {
        tracing::warn!(%error, "list response is not JSON pagegate can count");
        return Err(GuardError::NotJson.into());
    }
    if keyset && matches!(error, ScanError::TooDeep { .. }) {
        tracing::warn!(%error, "keyset page too deep to read: no cursor can be minted");
        return Err(GuardError::NotJson.into());
    }
    tracing::debug!(%error, "list response is not the expected JSON");
    Ok(true)
}

#[derive(Default)]
pub(super) struct HeldState {
    items: Vec<(usize, usize)>,
    root_open: Option<usize>,
    items_close: Option<usize>,
    root_end: Option<usize>,
    over: bool,
    /// The list at the items path has opened.
    listed: bool,
}

impl HeldState {
    fn on_event(&mut self, event: Event, allowed: usize) -> std::ops::ControlFlow<()> {
        let at = |offset: u64| usize::try_from(offset).unwrap_or(usize::MAX);
        match event {
            Event::RootOpen { offset, .. } => self.root_open = Some(at(offset)),
            Event::ItemsOpen { .. } => self.listed = true,
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

pub(super) fn body_error(error: &BoxError) -> BoxError {
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
