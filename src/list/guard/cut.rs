//! The page the client gets from a held answer: cut at its item or byte cap, its envelope kept,
//! and the next keyset cursor minted from the last item's key.

use std::time::SystemTime;

use bytes::Bytes;
use http::response::Parts;
use http::{HeaderValue, header};
use serde_json::value::RawValue;

use crate::cursor::{MAX_KEY_JSON_LEN, NextPage, next_page};
use crate::list::config::ListPolicy;
use crate::list::guard::TRUNCATED_HEADER;
use crate::list::guard::hold::{Held, Stop, item_limits};
use crate::list::guard::layer::Page;
use crate::list::pagination::{KeysetPlan, PagePlan};
use crate::telemetry::{Outcome, RouteMetrics};
use crate::{BoxError, GuardError};

/// Builds the client's response from a held page; a keyset route's codec signs the next cursor.
pub(super) fn finish(
    held: Held,
    policy: &ListPolicy,
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
    let next = match &plan.keyset {
        Some(keyset) => next_cursor(keyset, &bytes, &items, kept, more)?,
        None => None,
    };
    let probe = items.len() > client_items;
    mark_truncated(
        &mut parts,
        stop,
        probe && policy.items.0.is_empty(),
        metrics,
    );
    let envelope_field = plan
        .keyset
        .as_ref()
        .and_then(|k| k.policy.next_cursor_field.clone());
    if kept == items.len() && stop == Stop::Complete && envelope_field.is_none() && next.is_none() {
        return Ok(relay(parts, bytes));
    }

    let member = envelope_field.filter(|_| !policy.items.0.is_empty() && root_open.is_some());
    let member = member.map(|field| {
        let value = next
            .as_ref()
            .map_or_else(|| "null".to_owned(), |n| format!("\"{}\"", n.cursor));
        Bytes::from(format!(",\"{field}\":{value}}}"))
    });
    let ends = (stop, items_close, root_end);
    let pieces = assemble(
        &bytes,
        &items,
        kept,
        ends,
        policy.items.0.len(),
        member.as_ref(),
    );
    rewritten(&mut parts, &pieces, next);
    Ok((parts, pieces))
}

/// The client's body from slices of the held `bytes` (nothing is copied but the closers): the
/// first `kept` items of the list at `depth` and the rest of the document (or, cut, its
/// closers), with `member` (the envelope's cursor and the root's `}`) as the root object's last
/// member. A backend's own member of that name (DRF's `next`, Laravel's `next_cursor`) stays
/// in the body, and JSON parsers that keep the last of two (JavaScript, Python, Go, Ruby,
/// Jackson, serde) read pagegate's.
fn assemble(
    bytes: &Bytes,
    items: &[(usize, usize)],
    kept: usize,
    (stop, items_close, root_end): (Stop, Option<usize>, Option<usize>),
    depth: usize,
    member: Option<&Bytes>,
) -> Vec<Bytes> {
    let mut pieces: Vec<Bytes> = Vec::with_capacity(6);
    // The held bytes from `from` up to the root's end (one past its `}`), the member before
    // its `}`; with `rest`, what follows it too (whitespace).
    let to_end = |pieces: &mut Vec<Bytes>, from: usize, end: usize, rest: bool| {
        let after = if rest { bytes.len() } else { end };
        match member {
            Some(member) => {
                pieces.push(bytes.slice(from..end - 1));
                pieces.push(member.clone());
                pieces.push(bytes.slice(end..after));
            }
            None => pieces.push(bytes.slice(from..after)),
        }
    };
    match (stop, items_close, root_end) {
        (Stop::Complete, Some(close), Some(end)) if kept < items.len() => {
            // Drop the probe item (and anything after it), keep the rest of the document.
            let cut = kept.checked_sub(1).map_or(items[0].0, |last| items[last].1);
            pieces.push(bytes.slice(..cut));
            to_end(&mut pieces, close, end, false);
        }
        (Stop::Complete, _, Some(end)) => to_end(&mut pieces, 0, end, true),
        (Stop::Complete, _, None) => pieces.push(bytes.clone()),
        _ => {
            // Cut: end after the last kept item and close the list and its envelope.
            let cut = kept.checked_sub(1).map_or(0, |last| items[last].1);
            pieces.push(bytes.slice(..cut));
            // The member ends with the root's `}`.
            let closed = depth - usize::from(member.is_some());
            pieces.push(Bytes::from(format!("]{}", "}".repeat(closed))));
            pieces.extend(member.cloned());
        }
    }
    pieces
}

/// The head of a rewritten body: its length, the next page's link, and none of the backend's
/// validators, which no longer hold.
fn rewritten(parts: &mut Parts, pieces: &[Bytes], next: Option<NextPage>) {
    let length: usize = pieces.iter().map(Bytes::len).sum();
    for name in [header::CONTENT_LENGTH, header::ETAG] {
        parts.headers.remove(name);
    }
    parts.headers.remove("content-md5");
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if let Some(link) = next.and_then(|n| n.link) {
        parts.headers.insert(header::LINK, link);
    }
}

/// Says, in a header, the outcome and the metrics, that a page was cut and why. `whole`: a
/// byte cut that came after the probe item of a bare array, so the list lost nothing.
fn mark_truncated(parts: &mut Parts, stop: Stop, whole: bool, metrics: &RouteMetrics) {
    // (A complete document never holds more than `allowed` items: the scan stops at the next.)
    let reason = match stop {
        Stop::Bytes if whole => return,
        Stop::Bytes => "bytes",
        Stop::Items => "items",
        Stop::Complete => return,
    };
    match stop {
        Stop::Items => metrics.cut_items(),
        _ => metrics.cut_bytes(),
    }
    parts
        .headers
        .insert(TRUNCATED_HEADER, HeaderValue::from_static(reason));
    parts.extensions.insert(Outcome::Truncated);
}

/// Relays held bytes unchanged, with a `Content-Length` that is true for them (trailing
/// whitespace past the bound may have been dropped; then the validators go too).
pub(super) fn relay(mut parts: http::response::Parts, bytes: Bytes) -> Page {
    let length = HeaderValue::from(bytes.len());
    if parts.headers.get(header::CONTENT_LENGTH) != Some(&length) {
        parts.headers.remove(header::ETAG);
        parts.headers.remove("content-md5");
    }
    parts.headers.insert(header::CONTENT_LENGTH, length);
    (parts, vec![bytes])
}

/// Checks the keys of the kept items (and the probe item) and mints the next cursor.
pub(super) fn next_cursor(
    keyset: &KeysetPlan,
    bytes: &Bytes,
    items: &[(usize, usize)],
    kept: usize,
    more: bool,
) -> Result<Option<NextPage>, BoxError> {
    let policy = &keyset.policy;
    let mut previous: Option<Vec<Box<RawValue>>> = keyset.after.clone();
    let mut last = None;
    for (index, &(start, end)) in items.iter().enumerate().take(kept + 1) {
        let Some(key) = super::keys::extract(&bytes[start..end], &policy.keys) else {
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
            && !super::keys::strictly_after(prev, &key, policy.order)
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
            let ids = (policy.route_id, keyset.binding);
            let next = next_page(
                &policy.codec,
                ids,
                &refs,
                &keyset.next_base,
                SystemTime::now(),
            );
            Some(next.map_err(|_| GuardError::KeyTooLong {
                index: kept - 1,
                max: MAX_KEY_JSON_LEN,
            })?)
        }
        _ => None,
    })
}
