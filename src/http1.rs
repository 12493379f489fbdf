//! HTTP/1.1 heads read with httparse, shared by pagegate's own paths to backends
//! ([`crate::upstream`]) and from clients ([`crate::server`]): where each field lies in the
//! read buffer ([`places`]), and the [`HeaderMap`] whose values share that buffer once it is
//! frozen ([`header_map`]), as hyper's do.
//!
//! Hand-written: httparse hands out borrowed slices and `http` owned types; hyper's glue
//! between the two is private to it.

use std::ops::Range;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

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
    let mut headers = HeaderMap::with_capacity(places.len() + room);
    for place in places {
        let name =
            HeaderName::from_bytes(&head[place.name.clone()]).map_err(|_| "bad header name")?;
        let value = HeaderValue::from_maybe_shared(head.slice(place.value.clone()))
            .map_err(|_| "bad header value")?;
        headers.append(name, value);
    }
    Ok(headers)
}
