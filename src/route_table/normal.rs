//! The form paths are matched in: what every backend would read as the same resource reads
//! as one path here.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Which spellings of a separator a reading takes as one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Separators {
    /// `\` (IIS and Windows read it as `/`): the router's own reading.
    Backslash,
    /// None: `%2F`, `%5C` and `\` are characters of a segment (Express, Rails, Go).
    None,
    /// `%2F` (WSGI and ASGI servers decode the path before routing); `\` stays a character.
    EncodedSlash,
    /// `%2F`, `%5C` and `\`.
    All,
}

/// The form paths are matched in. Backends disagree on what names the same resource, so
/// matching is deliberately loose in the safe direction — every variant some backend would
/// serve as `/events` matches the `/events` route: percent-encoded unreserved characters are
/// decoded, `%2F`, `%5C` and `\` count as `/` as `separators` says (WSGI servers and IIS read
/// them so), `;parameters` are dropped (`%3B` is one too), trailing dots and spaces of a segment dropped
/// (`/events.`, `/events%2e`, `/events%20`: Windows and IIS read them as `/events`), empty and
/// `.` segments removed, `..` resolved, ASCII case folded, and a trailing slash ignored. The
/// request is forwarded as the client wrote it.
pub(super) fn normalize(path: &str, separators: Separators) -> Cow<'_, str> {
    if separators == Separators::Backslash && is_normal(path) {
        return Cow::Borrowed(path);
    }
    let slashed = spelled(path, separators);
    let mut segments: Vec<String> = Vec::new();
    for segment in slashed.split('/') {
        let segment = segment.split(';').next().unwrap_or_default();
        // A dot segment stays one; any other loses its trailing dots and spaces.
        let segment = match segment {
            "." | ".." => segment,
            s => s.trim_end_matches(['.', ' ']),
        };
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s.to_owned()),
        }
    }
    Cow::Owned(format!("/{}", segments.join("/")))
}

/// A path's characters as a reading sees them before it splits segments: unreserved escapes
/// decoded, ASCII case folded, `%3B` as `;`, `%20` as a space, and the separators `separators`
/// names as `/` (the others as characters: a `\` as `%5c`).
pub(super) fn spelled(path: &str, separators: Separators) -> String {
    let mut lowered = decode_unreserved(path).to_ascii_lowercase();
    if lowered.contains('%') {
        lowered = lowered.replace("%3b", ";").replace("%20", " ");
    }
    match separators {
        Separators::Backslash => lowered.replace('\\', "/"),
        Separators::None => lowered.replace('\\', "%5c"),
        Separators::EncodedSlash => lowered.replace('\\', "%5c").replace("%2f", "/"),
        Separators::All => lowered
            .replace("%2f", "/")
            .replace("%5c", "/")
            .replace('\\', "/"),
    }
}

/// Whether a path is already in normal form, so matching needs no copy of it: `/`-separated
/// non-empty segments of lower-case letters, digits, `-_~` and dots, none ending in a dot (a
/// dot segment, or a trailing dot Windows drops), and no trailing slash. Most requests' paths
/// are.
fn is_normal(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    rest.split('/').all(|segment| {
        !segment.is_empty()
            && !segment.ends_with('.')
            && segment
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_~.".contains(&b))
    })
}

/// A path as the backends that match exact segments read it (Express, Django, Starlette,
/// Rails, Go): escapes of unreserved characters decoded, the hex digits of other escapes in
/// lower case, and empty segments dropped (`//`, a trailing `/`: none of them binds one to a
/// `{param}`, and the router drops them too); case, `;params`, trailing dots and spaces and
/// `\` are kept.
pub(super) fn strict(path: &str) -> Cow<'_, str> {
    let decoded = decode_unreserved(path);
    let decoded = if decoded.contains("//") || (decoded.len() > 1 && decoded.ends_with('/')) {
        let segments: Vec<&str> = decoded.split('/').filter(|s| !s.is_empty()).collect();
        Cow::Owned(format!("/{}", segments.join("/")))
    } else {
        decoded
    };
    if !decoded.contains('%') {
        return decoded;
    }
    let mut out = String::with_capacity(decoded.len());
    let mut hex = 0;
    for c in decoded.chars() {
        if hex > 0 {
            hex -= 1;
            out.push(c.to_ascii_lowercase());
        } else {
            hex = if c == '%' { 2 } else { 0 };
            out.push(c);
        }
    }
    out.into()
}

/// Decodes `%XX` escapes of unreserved characters (ALPHA / DIGIT / `-._~`), keeps all others,
/// and writes a byte past ASCII (HTTP/1 servers take raw UTF-8 in a path) as its escape, as a
/// route's path is written: `/café` reads as `/caf%c3%a9`.
pub(super) fn decode_unreserved(path: &str) -> Cow<'_, str> {
    if !path.contains('%') && path.is_ascii() {
        return path.into();
    }
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(c) = hex.and_then(|h| u8::from_str_radix(h, 16).ok())
                && (c.is_ascii_alphanumeric() || b"-._~".contains(&c))
            {
                out.push(char::from(c));
                i += 3;
                continue;
            }
        }
        if bytes[i].is_ascii() {
            out.push(char::from(bytes[i]));
        } else {
            let _ = write!(out, "%{:02x}", bytes[i]);
        }
        i += 1;
    }
    out.into()
}

/// Whether a raw request path holds a NUL byte (`%00`), which names no resource: C backends
/// and file systems end the path there.
pub(super) fn nul(path: &str) -> bool {
    path.contains("%00")
}
