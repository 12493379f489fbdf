//! HTTP/1.1 heads read with httparse, shared by pagegate's own paths to backends
//! ([`crate::upstream`]) and from clients ([`crate::server`]): where each field lies in the
//! read buffer ([`places`]), and the [`HeaderMap`] whose values share that buffer once it is
//! frozen ([`header_map`]), as hyper's do. Also the readings of field values every part of
//! pagegate shares: comma-separated lists ([`items`], [`list_items`]) and lengths
//! ([`length`]). Maps written out are given back ([`recycle`]) for the next head's.
//!
//! Hand-written: httparse hands out borrowed slices and `http` owned types; hyper's glue
//! between the two is private to it.

use std::cell::RefCell;
use std::ops::Range;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

/// The items of one comma-separated field value (RFC 9110 §5.6.1), each trimmed (empty ones
/// included).
pub(crate) fn items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(<[u8]>::trim_ascii)
}

/// The items of a comma-separated header over all its lines, as [`items`]:
/// `Connection: keep-alive, Upgrade` gives `keep-alive` and `Upgrade`.
pub(crate) fn list_items(headers: &HeaderMap, name: HeaderName) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(name)
        .into_iter()
        .flat_map(|value| items(value.as_bytes()))
}

/// Whether an answer has no body whatever its head says (RFC 9112 §6.3, rule 1): one to a
/// `HEAD` (`head_only`), a `204` or a `304`.
pub(crate) fn bodiless(status: http::StatusCode, head_only: bool) -> bool {
    head_only || status == http::StatusCode::NO_CONTENT || status == http::StatusCode::NOT_MODIFIED
}

/// A `Content-Length` item: digits only (`str::parse` would take a `+`), within `u64`.
pub(crate) fn length(item: &[u8]) -> Option<u64> {
    if item.is_empty() || !item.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(item).ok()?.parse().ok()
}

/// Where one field's name and value lie in the head.
#[derive(Debug, Clone)]
pub(crate) struct Place {
    name: Range<usize>,
    value: Range<usize>,
}

/// Where `part` (a slice httparse took from `buf`) lies in `buf`.
pub(crate) fn range(buf: &[u8], part: &[u8]) -> Range<usize> {
    let from = part.as_ptr() as usize - buf.as_ptr() as usize;
    from..from + part.len()
}

/// Where each of `fields` (parsed from `buf`) lies in `buf`.
pub(crate) fn places(buf: &[u8], fields: &[httparse::Header<'_>]) -> Vec<Place> {
    fields
        .iter()
        .map(|field| Place {
            name: range(buf, field.name.as_bytes()),
            value: range(buf, field.value),
        })
        .collect()
}

/// The fields at `places` in `head`, their values sharing its memory, with room for `room`
/// more (growing a map rehashes it: pagegate adds its forwarding headers and request id);
/// what is wrong when a name or a value is not one `http` takes.
pub(crate) fn header_map(
    head: &Bytes,
    places: &[Place],
    room: usize,
) -> Result<HeaderMap, &'static str> {
    let mut headers = SPARE.with_borrow_mut(Vec::pop).unwrap_or_default();
    headers.reserve(places.len() + room);
    for place in places {
        let name =
            HeaderName::from_bytes(&head[place.name.clone()]).map_err(|_| "bad header name")?;
        let value = HeaderValue::from_maybe_shared(head.slice(place.value.clone()))
            .map_err(|_| "bad header value")?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// Maps kept by a thread for the next heads' (a few a connection in flight).
const SPARE_MAPS: usize = 16;
/// A map that grew past this many fields is dropped, not kept.
const SPARE_MAX_FIELDS: usize = 64;

thread_local! {
    /// Header maps whose message was written ([`recycle`]), for [`header_map`]: a map's two
    /// allocations are made once a thread, not twice a message (each over the size malloc
    /// keeps at hand). hyper keeps a connection's last map for the same reason. By hand: a
    /// stack a thread, with nothing to share or lock.
    static SPARE: RefCell<Vec<HeaderMap>> = const { RefCell::new(Vec::new()) };
}

/// Gives back the map of a message that was written: emptied (its values dropped now, as the
/// message's would be), and kept for the next head [`header_map`] reads on this thread.
pub(crate) fn recycle(mut map: HeaderMap) {
    if map.capacity() > SPARE_MAX_FIELDS {
        return;
    }
    map.clear();
    SPARE.with_borrow_mut(|spare| {
        if spare.len() < SPARE_MAPS {
            spare.push(map);
        }
    });
}

#[cfg(test)]
mod tests;
