//! A client's request head on pagegate's own HTTP/1.1 path ([`parse`]): a complete `GET` or
//! `HEAD` whose head says nothing that needs hyper's handling, a head still arriving
//! ([`NotHere::Partial`]), or one for hyper ([`NotHere::Hyper`]).
//!
//! What goes to hyper, from the first byte of the head, so that every rule it enforces toward
//! clients still applies there: a head httparse refuses
//! (its strict default, as hyper's: no obs-fold, names of token characters), any other
//! method or version, a target not in origin form, more than [`MAX_FIELDS`] fields, and any
//! of `Content-Length`, `Transfer-Encoding`, `Expect`, `Upgrade`, `TE` or `Connection: upgrade`
//! (a body, a `100 Continue`, an upgrade or trailers: hyper's machinery).

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, TE, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderName, Method, Uri, Version};

use crate::http1;

/// Most fields a head read here may have; one with more goes to hyper (which takes 100).
pub(super) const MAX_FIELDS: usize = 64;

/// Headers pagegate may add to a request without its map growing: the request id, four
/// forwarding headers, `Host`, trace context.
const ROOM: usize = 8;

/// A bodiless request taken out of the buffer.
#[derive(Debug)]
pub(super) struct Head {
    pub(super) request: http::Request<()>,
    /// The client asked to close the connection after it.
    pub(super) close: bool,
}

/// Why a head is not read here.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum NotHere {
    /// It has begun and is not complete yet.
    Partial,
    /// Anything else: hyper reads the connection from here.
    Hyper,
}

/// Reads the head at the start of `buf`, taking its bytes out; an error leaves the buffer as
/// it was.
pub(super) fn parse(buf: &mut BytesMut) -> Result<Head, NotHere> {
    // Left uninitialised for httparse to fill: zeroing 2 KiB costs more than the parse.
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    let mut head = httparse::Request::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut head,
        buf,
        &mut fields,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Err(NotHere::Partial),
        // Too many fields for this path: hyper's once the head is all here (it takes more),
        // read on until then, so that handing it over does not restart hyper's timer.
        Err(httparse::Error::TooManyHeaders) if !ended(buf) => return Err(NotHere::Partial),
        Err(_) => return Err(NotHere::Hyper),
    };
    let method = match head.method {
        Some("GET") => Method::GET,
        Some("HEAD") => Method::HEAD,
        _ => return Err(NotHere::Hyper),
    };
    let path = head.path.filter(|path| path.starts_with('/'));
    let Some(path) = path.filter(|_| head.version == Some(1)) else {
        return Err(NotHere::Hyper);
    };
    let mut close = false;
    for field in &*head.headers {
        let name = field.name.as_bytes();
        if named(
            name,
            &[CONTENT_LENGTH, TRANSFER_ENCODING, EXPECT, UPGRADE, TE],
        ) {
            return Err(NotHere::Hyper);
        }
        if named(name, &[CONNECTION]) {
            for token in http1::items(field.value) {
                if token.eq_ignore_ascii_case(b"upgrade") {
                    return Err(NotHere::Hyper);
                }
                close |= token.eq_ignore_ascii_case(b"close");
            }
        }
    }
    let target = http1::range(buf, path.as_bytes());
    let places = http1::places(buf, head.headers);
    let request = request(buf, len, target, &places, method).ok_or(NotHere::Hyper)?;
    Ok(Head { request, close })
}

/// Whether `buf` holds the empty line that ends a head (after `\r\n` or a bare `\n`, both of
/// which httparse reads as a line's end).
fn ended(buf: &[u8]) -> bool {
    memchr::memmem::find(buf, b"\n\r\n").is_some() || memchr::memmem::find(buf, b"\n\n").is_some()
}

/// The request of the first `len` bytes of `buf`, which are taken out; `None`, with `buf` as
/// it was, when its target or a field is not one `http` takes.
fn request(
    buf: &mut BytesMut,
    len: usize,
    target: std::ops::Range<usize>,
    places: &[http1::Place],
    method: Method,
) -> Option<http::Request<()>> {
    // Split off, as hyper does: the rest stays in the same allocation, which the buffer takes
    // back whole once the request's values are dropped. The target and values share the head.
    let head: Bytes = buf.split_to(len).freeze();
    let built = Uri::from_maybe_shared(head.slice(target))
        .ok()
        .zip(http1::header_map(&head, places, ROOM).ok());
    let Some((uri, headers)) = built else {
        // Nothing shares the head now: it goes back in front of the rest without a copy.
        let mut back = BytesMut::from(head);
        back.unsplit(std::mem::take(buf));
        *buf = back;
        return None;
    };
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    parts.headers = headers;
    Some(http::Request::from_parts(parts, ()))
}

/// Whether `name` is one of `names`, in any case.
fn named(name: &[u8], names: &[HeaderName]) -> bool {
    names
        .iter()
        .any(|known| name.eq_ignore_ascii_case(known.as_str().as_bytes()))
}
