//! An answer's head on pagegate's own HTTP/1.1 server path ([`encode`]), written by hyper's
//! rules for servers, so that a client cannot tell which path served it:
//!
//! * **Length.** A body of known length is sent with `Content-Length` of that length (a
//!   header saying another is corrected); one of unknown length with the answer's own
//!   `Content-Length` when it has one, else chunked. An empty body says `Content-Length: 0`.
//! * **Version.** Always HTTP/1.1, pagegate's own (RFC 9110 §6.2): an HTTP/1.0 backend's
//!   answer without a length goes out chunked, its client's connection kept.
//! * **No body** for `HEAD`, `204` and `304`, whatever the body holds; `HEAD` keeps the
//!   length its answer names; a `204` names none.
//! * **`Connection: close`** when the connection closes after it (the client asked, or
//!   pagegate is draining); an answer that says `close` itself closes it.
//! * **`Date`** when the answer has none, read from the clock once a second.
//! * **Trailers** are not sent: hyper sends them only to clients that send `TE: trailers`,
//!   and those requests take hyper's path.
//! * **An answer HTTP/1.1 cannot carry** (a 1xx, conflicting lengths) becomes a `500` and the
//!   connection closes, as with hyper ([`failed`]).

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRAILER, TRANSFER_ENCODING};
use http::{HeaderValue, StatusCode};
use hyper::ext::ReasonPhrase;

use crate::http1;

/// What the body says of its length before its first frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyLen {
    /// Ended already.
    Empty,
    Known(u64),
    Unknown,
}

/// How the body's bytes are framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// This many bytes are still to send.
    Length(u64),
    Chunked,
}

/// Writes `parts` as a head into `out`; how its body is framed and whether the connection
/// closes after it. An error (a 1xx answer, conflicting lengths) is pagegate's own: the
/// caller writes [`failed`] instead and closes the connection, as hyper does.
pub(super) fn encode(
    parts: &http::response::Parts,
    body: BodyLen,
    head_only: bool,
    mut close: bool,
    out: &mut BytesMut,
) -> Result<(Framing, bool), &'static str> {
    let status = parts.status;
    if status.is_informational() {
        return Err("an informational answer");
    }
    status_line(status, parts.extensions.get::<ReasonPhrase>(), out);
    let no_length = status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    let bodiless = http1::bodiless(status, head_only);
    let mut length = Length::default();
    let (mut said_close, mut wrote_date) = (false, false);
    let mut last_coding: Option<&HeaderValue> = None;
    for (name, value) in &parts.headers {
        match *name {
            // Never in a 204 (RFC 9110 §8.6).
            CONTENT_LENGTH if status == StatusCode::NO_CONTENT => continue,
            CONTENT_LENGTH => {
                length.named(value, body, head_only, out)?;
                continue;
            }
            TRANSFER_ENCODING => {
                if length.named.is_some() {
                    return Err("both Content-Length and Transfer-Encoding");
                }
                if bodiless {
                    continue;
                }
                (length.framing, length.wrote, last_coding) = (Framing::Chunked, true, Some(value));
            }
            TRAILER if bodiless => continue,
            CONNECTION => {
                said_close |= http1::items(value.as_bytes())
                    .any(|token| token.eq_ignore_ascii_case(b"close"));
            }
            DATE => wrote_date = true,
            _ => {}
        }
        line(name.as_str().as_bytes(), value.as_bytes(), out);
    }
    // `chunked` must be the last coding (RFC 9112 §6.1).
    if last_coding.is_some_and(|coding| !ends_chunked(coding.as_bytes())) {
        out.put_slice(b"transfer-encoding: chunked\r\n");
    }
    let mut framing = length.framing;
    if !length.wrote {
        framing = implied(body, head_only, no_length, out);
    }
    if bodiless {
        framing = Framing::Length(0);
    }
    if close && !said_close {
        out.put_slice(b"connection: close\r\n");
    }
    close |= said_close;
    if !wrote_date {
        date(out);
    }
    out.put_slice(b"\r\n");
    Ok((framing, close))
}

/// What the answer's own framing headers said so far.
#[derive(Debug)]
struct Length {
    framing: Framing,
    /// Whether a `Content-Length` or `Transfer-Encoding` line was written.
    wrote: bool,
    /// The length a `Content-Length` line named.
    named: Option<u64>,
}

impl Default for Length {
    fn default() -> Self {
        Self {
            framing: Framing::Length(0),
            wrote: false,
            named: None,
        }
    }
}

impl Length {
    /// One `Content-Length` line of the answer, for a body of length `body`.
    fn named(
        &mut self,
        value: &HeaderValue,
        body: BodyLen,
        head_only: bool,
        out: &mut BytesMut,
    ) -> Result<(), &'static str> {
        const BOTH: &str = "both Content-Length and Transfer-Encoding";
        match body {
            BodyLen::Known(len) if self.named.is_none() => {
                if self.wrote {
                    return Err(BOTH);
                }
                // A HEAD's body is empty: its answer's own length is the one to name.
                if head_only {
                    line(b"content-length", value.as_bytes(), out);
                } else {
                    length_line(len, out);
                }
                (self.framing, self.wrote, self.named) = (Framing::Length(len), true, Some(len));
            }
            BodyLen::Known(_) => {}
            BodyLen::Unknown => {
                let len =
                    http1::length(value.as_bytes().trim_ascii()).ok_or("a bad Content-Length")?;
                match self.named {
                    Some(named) if named != len => return Err("two Content-Lengths"),
                    Some(_) => {}
                    None if self.wrote => return Err(BOTH),
                    None => {
                        line(b"content-length", value.as_bytes(), out);
                        (self.framing, self.wrote, self.named) =
                            (Framing::Length(len), true, Some(len));
                    }
                }
            }
            // An empty body's length is written by `implied`; a HEAD's is the answer's.
            BodyLen::Empty if head_only && !self.wrote => {
                line(b"content-length", value.as_bytes(), out);
                self.wrote = true;
            }
            BodyLen::Empty => {}
        }
        Ok(())
    }
}

/// The head of a `500` that replaces an answer [`encode`] refused.
pub(super) fn failed(out: &mut BytesMut) {
    out.put_slice(
        b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n",
    );
    date(out);
    out.put_slice(b"\r\n");
}

/// The status line; a reason of the backend's own is relayed, as hyper does.
fn status_line(status: StatusCode, reason: Option<&ReasonPhrase>, out: &mut BytesMut) {
    if status == StatusCode::OK && reason.is_none() {
        out.put_slice(b"HTTP/1.1 200 OK\r\n");
        return;
    }
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(status.as_str().as_bytes());
    out.put_u8(b' ');
    match reason {
        Some(reason) => out.put_slice(reason.as_bytes()),
        None => out.put_slice(status.canonical_reason().unwrap_or("<none>").as_bytes()),
    }
    out.put_slice(b"\r\n");
}

/// The framing of a body whose answer names none.
fn implied(body: BodyLen, head_only: bool, no_length: bool, out: &mut BytesMut) -> Framing {
    match body {
        BodyLen::Unknown if head_only || no_length => Framing::Length(0),
        BodyLen::Unknown => {
            out.put_slice(b"transfer-encoding: chunked\r\n");
            Framing::Chunked
        }
        BodyLen::Empty | BodyLen::Known(0) => {
            if !no_length && !head_only {
                out.put_slice(b"content-length: 0\r\n");
            }
            Framing::Length(0)
        }
        BodyLen::Known(len) => {
            if no_length {
                return Framing::Length(0);
            }
            length_line(len, out);
            Framing::Length(len)
        }
    }
}

fn line(name: &[u8], value: &[u8], out: &mut BytesMut) {
    out.reserve(name.len() + value.len() + 4);
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

fn length_line(len: u64, out: &mut BytesMut) {
    line(
        b"content-length",
        itoa::Buffer::new().format(len).as_bytes(),
        out,
    );
}

/// Whether the last coding of a `Transfer-Encoding` value is `chunked`.
fn ends_chunked(value: &[u8]) -> bool {
    http1::items(value)
        .last()
        .is_some_and(|coding| coding.eq_ignore_ascii_case(b"chunked"))
}

thread_local! {
    /// The `Date` line of the current second, rendered once a second per thread.
    static DATE_LINE: RefCell<(u64, Vec<u8>)> = const { RefCell::new((u64::MAX, Vec::new())) };
}

/// Writes `date: …` for now.
fn date(out: &mut BytesMut) {
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE_LINE.with_borrow_mut(|(at, rendered)| {
        if *at != second {
            *at = second;
            rendered.clear();
            rendered.extend_from_slice(b"date: ");
            rendered.extend_from_slice(httpdate::fmt_http_date(now).as_bytes());
            rendered.extend_from_slice(b"\r\n");
        }
        out.put_slice(rendered);
    });
}
