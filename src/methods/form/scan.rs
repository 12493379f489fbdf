//! `_method` in form bodies off list paths, found while the body streams to the backend.
//!
//! On a path where a form's `_method` could take a request to another route (one its own method
//! does not reach, say a rate-limited GET), the body is scanned as it passes, in constant
//! memory and with no size cap, so uploads of any size still go through. The scan decides only
//! at the body's end, so the body's last frame is held back until then: a body that names such
//! a method fails there instead, and the backend never receives a whole request to run.
//!
//! Hand-written: `form_urlencoded` and `multer` parse whole values; this needs only the first
//! bytes of each name and the first of one value, byte by byte across frames.

use super::super::{MethodError, STANDARD};
use super::Form;

/// Most bytes of a method name kept while scanning (the longest standard method has 7).
const NAME: usize = 16;

/// A method name being read: leading and trailing whitespace dropped, as the router trims.
#[derive(Debug, Default)]
struct Value {
    bytes: [u8; NAME],
    len: usize,
    /// Whitespace came after the name: anything more makes it no method.
    ended: bool,
    /// Too long, or more after the name: no method.
    invalid: bool,
}

impl Value {
    fn push(&mut self, byte: u8) {
        if byte.is_ascii_whitespace() {
            self.ended |= self.len > 0;
        } else if self.ended || self.len == NAME {
            self.invalid = true;
        } else {
            self.bytes[self.len] = byte;
            self.len += 1;
        }
    }

    /// The standard method this names (any case).
    fn method(&self) -> Option<usize> {
        if self.invalid {
            return None;
        }
        let name = &self.bytes[..self.len];
        STANDARD
            .iter()
            .position(|m| name.eq_ignore_ascii_case(m.as_bytes()))
    }
}

/// Where an urlencoded scan is.
#[derive(Debug)]
enum Url {
    /// In a name: the first seven bytes after leading spaces (all a `_method` name needs).
    Name { head: [u8; 7], len: usize },
    /// In the value of a `_method` name.
    Value(Value),
    /// In a value nobody needs.
    Skip,
}

/// Percent-decoding across frames: `%` and the digits seen so far.
#[derive(Debug, Default)]
struct Percent {
    pending: [u8; 2],
    len: usize,
}

/// The scan of one form body.
#[derive(Debug)]
pub(super) struct Scan {
    kind: Form,
    url: Url,
    percent: Percent,
    /// Multipart: the lowercase tail of the last bytes, to find `name="_method"` across
    /// frames; then the state of that part.
    tail: Vec<u8>,
    part: Part,
    json: Json,
    /// Methods that would take the request to another route, by bit of [`STANDARD`].
    moves: u16,
    /// The refusal found, if any.
    found: Option<&'static str>,
}

/// Where a multipart scan is.
#[derive(Debug)]
enum Part {
    /// Looking for a part named `_method`.
    Seek,
    /// In that part's headers: line breaks in a row so far (CRs aside).
    Headers(u8),
    /// In its value.
    Value(Value),
}

/// Bytes of a multipart body kept to find a part's name across frames (runs of spaces count
/// as one).
const TAIL: usize = 32;

/// Whether `tail` (lowercase) ends a `name` parameter that folds to `_method`, as PHP folds
/// it: ` name="_method`, `;name=.method`, `; name = " [method`, … but not `filename="_method`.
/// The name may go on (`_method[]`), as the urlencoded check reads it.
fn names_override(tail: &[u8]) -> bool {
    fn optional<'a>(rest: &'a [u8], suffix: &[u8]) -> &'a [u8] {
        rest.strip_suffix(suffix).unwrap_or(rest)
    }
    let Some([rest @ .., b'_' | b'.' | b'[']) = tail.strip_suffix(b"method") else {
        return false;
    };
    let rest = optional(optional(optional(rest, b" "), b"\""), b" ");
    let Some(rest) = rest.strip_suffix(b"=") else {
        return false;
    };
    let Some(rest) = optional(rest, b" ").strip_suffix(b"name") else {
        return false;
    };
    matches!(rest.last(), Some(b' ' | b'\t' | b';' | b'\n'))
}

impl Scan {
    pub(super) fn new(kind: Form, moves: u16) -> Self {
        Self {
            kind,
            url: Url::Name {
                head: [0; 7],
                len: 0,
            },
            percent: Percent::default(),
            tail: Vec::with_capacity(16),
            part: Part::Seek,
            json: Json::default(),
            moves,
            found: None,
        }
    }

    /// Scans the next bytes of the body.
    pub(super) fn feed(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if self.found.is_some() {
                return;
            }
            match self.kind {
                Form::UrlEncoded => self.url_byte(byte),
                Form::Multipart => self.part_byte(byte),
                Form::Json => self.json_byte(byte),
                Form::Mixed => {
                    self.url_byte(byte);
                    self.json_byte(byte);
                }
            }
        }
    }

    /// A `%` and digits left pending pass as written (they were no escape).
    fn flush_percent(&mut self) {
        let p = std::mem::take(&mut self.percent);
        for &byte in &p.pending[..p.len] {
            self.url_decoded(byte);
        }
    }

    fn json_byte(&mut self, byte: u8) {
        if let Some(value) = self.json.byte(byte) {
            self.judge(&value);
        }
    }

    /// The body ended: the refusal, if any (a JSON value never closed is no override: no
    /// parser reads the body).
    pub(super) fn end(&mut self) -> Option<MethodError> {
        if matches!(self.kind, Form::UrlEncoded | Form::Mixed) {
            self.flush_percent();
        }
        if let Url::Value(value) = std::mem::replace(&mut self.url, Url::Skip) {
            self.judge(&value);
        }
        if let Part::Value(value) = std::mem::replace(&mut self.part, Part::Seek) {
            self.judge(&value);
        }
        self.found.map(|method| MethodError::Override {
            sent: format!("_method={method} (in the body)"),
            method,
        })
    }

    fn judge(&mut self, value: &Value) {
        if let Some(i) = value.method()
            && self.moves & (1 << i) != 0
        {
            self.found = Some(STANDARD[i]);
        }
    }

    fn url_byte(&mut self, byte: u8) {
        match byte {
            // Rack 2, Perl's CGI and older Pythons split pairs at `;` too.
            b'&' | b';' => {
                self.flush_percent();
                let next = Url::Name {
                    head: [0; 7],
                    len: 0,
                };
                if let Url::Value(value) = std::mem::replace(&mut self.url, next) {
                    self.judge(&value);
                }
            }
            b'=' if matches!(self.url, Url::Name { .. }) => {
                self.flush_percent();
                let named = matches!(&self.url, Url::Name { head, len: 7 }
                    if matches!(head[0], b'_' | b'.' | b'[') && head[1..].eq_ignore_ascii_case(b"method"));
                self.url = if named {
                    Url::Value(Value::default())
                } else {
                    Url::Skip
                };
            }
            _ => {
                if let Some(decoded) = self.decode(byte) {
                    for b in decoded.into_iter().flatten() {
                        self.url_decoded(b);
                    }
                }
            }
        }
    }

    /// Percent-decodes one byte; `+` is a space. Returns up to three bytes (an invalid escape
    /// passes as written).
    fn decode(&mut self, byte: u8) -> Option<[Option<u8>; 3]> {
        let p = &mut self.percent;
        if p.len == 0 {
            return Some(match byte {
                b'%' => {
                    p.pending[0] = byte;
                    p.len = 1;
                    return None;
                }
                b'+' => [Some(b' '), None, None],
                _ => [Some(byte), None, None],
            });
        }
        if !byte.is_ascii_hexdigit() {
            let kept = (p.len == 2).then_some(p.pending[1]);
            *p = Percent::default();
            return Some([Some(b'%'), kept, Some(byte)]);
        }
        if p.len == 1 {
            p.pending[1] = byte;
            p.len = 2;
            return None;
        }
        let hex = |b: u8| char::from(b).to_digit(16).unwrap_or(0) as u8;
        let value = hex(p.pending[1]) << 4 | hex(byte);
        *p = Percent::default();
        Some([Some(value), None, None])
    }

    fn url_decoded(&mut self, byte: u8) {
        match &mut self.url {
            Url::Name { head, len } => {
                // Leading spaces are folded away, as PHP does.
                // Names longer than seven bytes keep their prefix: `_method…` still counts, as
                // the router's check reads it.
                if *len < 7 && !(*len == 0 && byte == b' ') {
                    head[*len] = byte;
                    *len += 1;
                }
            }
            Url::Value(value) => value.push(byte),
            Url::Skip => {}
        }
    }

    fn part_byte(&mut self, byte: u8) {
        match &mut self.part {
            Part::Seek => {
                let byte = byte.to_ascii_lowercase();
                // PHP drops any number of spaces before a name: a run counts as one here.
                if byte != b' ' || self.tail.last() != Some(&b' ') {
                    self.tail.push(byte);
                    if self.tail.len() > TAIL {
                        self.tail.remove(0);
                    }
                }
                if byte == b'd' && names_override(&self.tail) {
                    self.tail.clear();
                    self.part = Part::Headers(0);
                }
            }
            Part::Headers(newlines) => {
                // Headers end at an empty line: CR LF CR LF, or bare LF LF as PHP accepts.
                match byte {
                    b'\n' => *newlines += 1,
                    b'\r' => {}
                    _ => *newlines = 0,
                }
                if *newlines == 2 {
                    self.part = Part::Value(Value::default());
                }
            }
            Part::Value(value) if byte != b'\r' && byte != b'\n' => value.push(byte),
            Part::Value(_) => {
                // The value's line ends: judge it, then look for the next such part.
                if let Part::Value(value) = std::mem::replace(&mut self.part, Part::Seek) {
                    self.judge(&value);
                }
            }
        }
    }
}

mod json;
mod scanned;

use json::Json;
pub(super) use scanned::Scanned;

#[cfg(test)]
mod tests;
