//! An answer's head on pagegate's own HTTP/1.1 path: parsed with httparse into `http` types
//! whose values share the read buffer ([`parse_head`]), and read for how its body is framed
//! and whether its connection may be kept ([`framing`]), by the rules in [`super`]'s doc.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, StatusCode, Version};
use hyper::ext::ReasonPhrase;

use super::body::Framing;
use super::{MAX_HEADERS, WireError};
use crate::http1::{self, list_items};

/// Headers pagegate may add to an answer without its map growing (the request id, the
/// rewritten `Location`'s neighbours).
const ROOM: usize = 4;

/// Parses a complete head at the start of `buf` and takes it out; `None` while incomplete.
/// Header values share the buffer's memory, as hyper's do.
pub(super) fn parse_head(buf: &mut BytesMut) -> Result<Option<http::response::Parts>, WireError> {
    // Left uninitialised for httparse to fill: zeroing 3 KiB cost more than the parse.
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut answer = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut answer,
        buf,
        &mut fields,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(WireError::Malformed("too many header fields"));
        }
        Err(_) => return Err(WireError::Malformed("head does not parse")),
    };
    let status = answer
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or(WireError::Malformed("bad status"))?;
    let version = match answer.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    // Where the reason and each field lie in the buffer, to share it once frozen.
    let reason = answer
        .reason
        .filter(|reason| !reason.is_empty() && Some(*reason) != status.canonical_reason())
        .map(|reason| http1::range(buf, reason.as_bytes()));
    let places = http1::places(buf, answer.headers);
    let head: Bytes = buf.split_to(len).freeze();
    let headers = http1::header_map(&head, &places, ROOM).map_err(WireError::Malformed)?;
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = status;
    parts.version = version;
    parts.headers = headers;
    // A reason of the backend's own (`499 Client Closed Request`) is relayed, as hyper does.
    if let Some(reason) = reason.and_then(|r| ReasonPhrase::try_from(head.slice(r)).ok()) {
        parts.extensions.insert(reason);
    }
    Ok(Some(parts))
}

/// How the answer's body is framed and whether its connection may be kept; `None` for an
/// informational answer, which another follows.
pub(super) fn framing(
    parts: &mut http::response::Parts,
    head_only: bool,
) -> Result<(Option<Framing>, bool), WireError> {
    let status = parts.status;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Ok((Some(Framing::Length(0)), false));
    }
    if status.is_informational() {
        return Ok((None, true));
    }
    let keep = keeps_alive(parts.version, &parts.headers);
    // No body, whatever the head says of one; but the length of a HEAD or 304 answer is
    // relayed (the body a GET would get), so it is read as strictly as one that frames (a
    // 204's is not relayed).
    if http1::bodiless(status, head_only) {
        if head_only || status != StatusCode::NO_CONTENT {
            content_length(&parts.headers)?;
        }
        return Ok((Some(Framing::Length(0)), keep));
    }
    if parts.headers.contains_key(TRANSFER_ENCODING) {
        if parts.version == Version::HTTP_10 {
            return Err(WireError::Malformed(
                "Transfer-Encoding in an HTTP/1.0 answer",
            ));
        }
        // A coding other than chunked would reach the client undone, with nothing to say so
        // (`Transfer-Encoding` is the hop's): refused.
        if !only_chunked(&parts.headers) {
            return Err(WireError::Malformed("a transfer coding other than chunked"));
        }
        // Chunked wins over a length (rule 3); the length goes, and so does the connection.
        let framed_twice = parts.headers.remove(CONTENT_LENGTH).is_some();
        return Ok((Some(Framing::chunked()), keep && !framed_twice));
    }
    Ok(match content_length(&parts.headers)? {
        Some(length) => (Some(Framing::Length(length)), keep),
        // No framing at all: the body ends with the connection.
        None => (Some(Framing::ToClose), false),
    })
}

/// Whether the backend keeps the connection open after this answer.
fn keeps_alive(version: Version, headers: &HeaderMap) -> bool {
    let says =
        |word: &[u8]| list_items(headers, CONNECTION).any(|token| token.eq_ignore_ascii_case(word));
    match version {
        Version::HTTP_10 => says(b"keep-alive"),
        _ => !says(b"close"),
    }
}

/// Whether `Transfer-Encoding`, over all its lines, names `chunked` and nothing else, once.
pub(in crate::upstream::pool) fn only_chunked(headers: &HeaderMap) -> bool {
    let mut codings = list_items(headers, TRANSFER_ENCODING);
    codings
        .next()
        .is_some_and(|coding| coding.eq_ignore_ascii_case(b"chunked"))
        && codings.next().is_none()
}

/// The one length every `Content-Length` value says, if there is one.
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, WireError> {
    let mut length = None;
    for item in list_items(headers, CONTENT_LENGTH) {
        let parsed = http1::length(item).ok_or(WireError::Malformed("bad Content-Length"))?;
        if length.is_some_and(|known| known != parsed) {
            return Err(WireError::Malformed("conflicting Content-Length values"));
        }
        length = Some(parsed);
    }
    Ok(length)
}
