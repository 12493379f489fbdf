//! Pagination policy: turn any list request into a bounded page before it reaches the backend.
//!
//! The query string is read as raw `name=value` pieces. Pieces that pagegate does not control
//! are forwarded byte for byte, in their original order. The controlled ones (page size,
//! offset or page, cursor, and on keyset routes the backend's key and sort parameters) are
//! validated strictly — plain decimal digits, once, spelled exactly as configured — then
//! re-emitted canonically, capped or refused per the route's `on_violation`.

use std::sync::Arc;

use serde_json::value::RawValue;

use crate::cursor::{CursorError, binding_hash};
use crate::list::config::{KeysetPolicy, ListPolicy, OffsetParam, OnViolation};
use crate::list::pagination::query::{Piece, disguised, folded, number, pieces};

mod cookies;
mod error;
mod layer;
mod query;

pub use error::PaginationError;
pub(crate) use layer::{PaginationLayer, PlanWouldRefuse};

/// Why planning a page failed: a bad parameter or a bad cursor (both 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PlanError {
    /// A pagination parameter breaks the route's policy.
    #[error(transparent)]
    Pagination(#[from] PaginationError),
    /// The cursor does not verify.
    #[error(transparent)]
    Cursor(#[from] CursorError),
}

/// Response header telling the client its page size was lowered: `limit=1000; requested=5000`.
pub(crate) const CLAMPED_HEADER: &str = "pagegate-clamped";

/// Report-only: the header naming the query pagegate would have forwarded instead.
pub(crate) const WOULD_REWRITE_HEADER: &str = "pagegate-would-rewrite";

/// Report-only: what the list guard checks a response against, though the request went
/// through unchanged (stored in request extensions instead of a [`PagePlan`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReportPlan {
    /// Items the client would have received at most.
    pub page_size: u64,
}

/// What the rest of the stack needs to know about a planned page (stored in request extensions).
#[derive(Debug, Clone)]
pub(crate) struct PagePlan {
    /// Items the client receives at most.
    pub page_size: u64,
    /// The page size the client asked for, when it was clamped.
    pub clamped_from: Option<u64>,
    /// Keyset state, on keyset routes.
    pub keyset: Option<KeysetPlan>,
}

/// Keyset state of one request.
#[derive(Debug, Clone)]
pub(crate) struct KeysetPlan {
    /// The route's keyset policy.
    pub policy: Arc<KeysetPolicy>,
    /// Hash of the request's other query parameters; cursors are bound to it.
    pub binding: u64,
    /// The key the page starts after (from the cursor).
    pub after: Option<Vec<Box<RawValue>>>,
    /// The next-page URL without its cursor value: `/events?status=a&limit=50&cursor=`.
    pub next_base: String,
}

/// The result of planning: the query to forward and the plan for the response.
#[derive(Debug, Clone)]
pub(crate) struct Planned {
    /// The query string sent upstream (without `?`; empty for none).
    pub query: String,
    /// The plan.
    pub plan: PagePlan,
}

/// `s` with raw UTF-8 percent-encoded, as a client sends it back from a header (ASCII only).
fn escaped(s: &str) -> std::borrow::Cow<'_, str> {
    percent_encoding::utf8_percent_encode(s, percent_encoding::CONTROLS).into()
}

/// Applies a route's policy to a request's path and raw query string; a keyset route's codec
/// verifies its cursors.
pub(crate) fn plan(policy: &ListPolicy, path: &str, query: &str) -> Result<Planned, PlanError> {
    let keyset = policy.keyset.as_ref();
    let offset_name = policy.offset.name();
    let all = pieces(query);
    let (slots, others) = sort(policy, &all)?;
    let [limit_at, offset_at, cursor_at] = slots;
    let limit_piece = limit_at.map(|i| all[i]);
    let offset_piece = offset_at.map(|i| all[i]);
    let cursor_piece = cursor_at.map(|i| all[i]);
    let (page_size, clamped_from) = page_size(policy, limit_piece)?;

    // The next-page link (and the deep-offset hint) keeps the client's filters and page size,
    // raw UTF-8 escaped: a header holds ASCII only, and the next request comes escaped.
    let path = escaped(path);
    let path = path.as_ref();
    let others: Vec<_> = others.into_iter().map(escaped).collect();
    let mut next_base = String::from(path);
    next_base.push('?');
    for other in &others {
        next_base.push_str(other);
        next_base.push('&');
    }
    if limit_piece.is_some() {
        next_base.push_str(&format!("{}={page_size}&", policy.limit_param));
    }

    // A cursor is bound to the path (`/users/1/events` ≠ `/users/2/events`) and to the other
    // parameters, so it cannot start another list at a chosen key.
    let binding = binding_hash(&[path], others.iter().map(AsRef::as_ref));
    let cursor = match (keyset, cursor_piece) {
        (Some(k), Some(c)) => Some(open_cursor(k, c.value.unwrap_or_default(), binding)?),
        _ => None,
    };
    // With a cursor the offset is dropped; without one it is checked and re-emitted canonically.
    let offset = match offset_piece {
        Some(p) if cursor.is_none() => Some(check_offset(policy, p, page_size, &next_base)?),
        _ => None,
    };

    let forward_limit = if keyset.is_some() {
        page_size.saturating_add(1)
    } else {
        page_size
    };
    // pagegate's own parameters go first: parsers that stop after N parameters (qs, PHP's
    // max_input_vars: 1000) must not lose them behind a client's padding. The client's other
    // parameters follow, byte for byte, in their original order.
    let mut out: Vec<String> = Vec::with_capacity(all.len() + 4);
    out.push(format!("{}={forward_limit}", policy.limit_param));
    if let Some(value) = offset {
        out.push(format!("{offset_name}={value}"));
    }
    let keyset_plan = keyset.map(|k| {
        if let Some(after) = &cursor {
            for (key, value) in k.keys.iter().zip(after) {
                out.push(format!("{}={}", key.param, param_value(value)));
            }
        }
        for (name, value) in &k.set_params {
            out.push(format!("{name}={value}"));
        }
        next_base.push_str(&k.cursor_param);
        next_base.push('=');
        KeysetPlan {
            policy: Arc::clone(k),
            binding,
            after: cursor,
            next_base,
        }
    });
    let controlled_at = [limit_at, offset_at, cursor_at];
    out.extend(
        all.iter()
            .enumerate()
            .filter(|(at, _)| !controlled_at.contains(&Some(*at)))
            .map(|(_, piece)| piece.raw.to_owned()),
    );
    Ok(Planned {
        query: out.join("&"),
        plan: PagePlan {
            page_size,
            clamped_from,
            keyset: keyset_plan,
        },
    })
}

/// The names pagination controls: 0 = limit, 1 = offset/page, 2 = cursor (keyset routes),
/// then the reserved keyset names.
fn controlled(policy: &ListPolicy) -> Vec<&str> {
    let mut controlled: Vec<&str> = vec![&policy.limit_param, policy.offset.name()];
    if let Some(k) = &policy.keyset {
        controlled.push(&k.cursor_param);
        controlled.extend(k.keys.iter().map(|key| key.param.as_str()));
        controlled.extend(k.set_params.iter().map(|(name, _)| name.as_str()));
    }
    controlled
}

/// Cookies named like a controlled parameter, dropped (see [`cookies`]); how many.
fn drop_controlled_cookies(policy: &ListPolicy, headers: &mut http::HeaderMap) -> usize {
    if headers.contains_key(http::header::COOKIE) {
        cookies::drop_controlled(headers, &controlled(policy))
    } else {
        0
    }
}

/// Where the limit, offset and cursor parameters stand among the query's pieces, and the
/// client's other parameters; a repeated, reserved or disguised paging parameter is refused.
fn sort<'q>(
    policy: &ListPolicy,
    all: &[Piece<'q>],
) -> Result<([Option<usize>; 3], Vec<&'q str>), PlanError> {
    let controlled = controlled(policy);
    // Folded only when a piece is not spelled exactly like a controlled name (most requests
    // carry none such).
    let folded_controlled = std::cell::OnceCell::new();
    let mut slots: [Option<usize>; 3] = [None, None, None];
    let mut others: Vec<&str> = Vec::new();
    for (at, piece) in all.iter().enumerate() {
        match controlled.iter().position(|c| *c == piece.name) {
            Some(i) if i < 3 => {
                if slots[i].replace(at).is_some() {
                    return Err(PaginationError::Repeated {
                        param: controlled[i].to_owned(),
                    }
                    .into());
                }
            }
            Some(i) => {
                return Err(PaginationError::Reserved {
                    param: controlled[i].to_owned(),
                    cursor_param: controlled[2].to_owned(),
                }
                .into());
            }
            None => {
                let folded_controlled = folded_controlled
                    .get_or_init(|| controlled.iter().map(|c| folded(c)).collect::<Vec<_>>());
                if let Some(i) = disguised(piece.raw, folded_controlled) {
                    return Err(PaginationError::Disguised {
                        param: controlled[i].to_owned(),
                        sent: piece.name.to_owned(),
                    }
                    .into());
                }
                others.push(piece.raw);
            }
        }
    }
    Ok((slots, others))
}

/// The page size asked for (or the default), clamped to `max_limit` or refused above it; with
/// the size asked for when it was clamped. A `max_items` below `max_limit` bounds it the same
/// way: a backend asked for more would send rows the guard then cuts, and an offset client
/// that steps by what it asked for would never see them.
fn page_size(
    policy: &ListPolicy,
    limit: Option<Piece<'_>>,
) -> Result<(u64, Option<u64>), PlanError> {
    let max = policy.max_limit.min(policy.max_items);
    let requested = match limit {
        Some(p) => number(&policy.limit_param, p.value)?,
        None => policy.default_limit.min(max),
    };
    if requested == 0 {
        return Err(PaginationError::Zero {
            param: policy.limit_param.clone(),
        }
        .into());
    }
    if requested <= max {
        Ok((requested, None))
    } else if policy.on_violation == OnViolation::Clamp {
        Ok((max, Some(requested)))
    } else {
        Err(PaginationError::LimitTooLarge {
            param: policy.limit_param.clone(),
            value: requested,
            max,
        }
        .into())
    }
}

fn open_cursor(
    k: &KeysetPolicy,
    value: &str,
    binding: u64,
) -> Result<Vec<Box<RawValue>>, CursorError> {
    if value.is_empty() {
        return Err(CursorError::Truncated);
    }
    k.codec.decode(
        value,
        k.route_id,
        binding,
        k.keys.len(),
        std::time::SystemTime::now(),
    )
}

/// Checks an offset (or page) against `max_offset`; returns the value to forward.
fn check_offset(
    policy: &ListPolicy,
    piece: Piece<'_>,
    page_size: u64,
    next_base: &str,
) -> Result<u64, PaginationError> {
    let name = policy.offset.name();
    let value = number(name, piece.value)?;
    let offset = match &policy.offset {
        OffsetParam::Offset(_) => value,
        OffsetParam::Page { first, .. } => {
            if value < *first {
                return Err(PaginationError::PageBelowFirst {
                    param: name.to_owned(),
                    value,
                    first: *first,
                });
            }
            (value - first).saturating_mul(page_size)
        }
    };
    if offset <= policy.max_offset {
        return Ok(value);
    }
    let first_page = policy.keyset.as_ref().map(|_| {
        next_base
            .trim_end_matches('&')
            .trim_end_matches('?')
            .to_owned()
    });
    let hint = match &first_page {
        Some(url) => format!(
            "deep offsets make the backend scan and discard every skipped row; start at {url} and follow the Link rel=\"next\" header, which costs the same at any depth"
        ),
        None => "deep offsets make the backend scan and discard every skipped row; narrow the request with filters instead".to_owned(),
    };
    Err(PaginationError::OffsetTooDeep {
        param: name.to_owned(),
        value,
        offset,
        max: policy.max_offset,
        hint,
        first_page,
    })
}

/// A key value as a query parameter value: strings unquoted, everything percent-encoded.
fn param_value(value: &RawValue) -> String {
    let text = match serde_json::from_str::<String>(value.get()) {
        Ok(s) => s,
        Err(_) => value.get().to_owned(),
    };
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[cfg(test)]
mod tests;
