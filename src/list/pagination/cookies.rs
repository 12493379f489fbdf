//! Cookies named like paging parameters, dropped from list requests. PHP's `$_REQUEST` (with no
//! `request_order` set, as the official images ship, cookies come last and win) and classic
//! ASP.NET's `Request["offset"]` (a cookie when the query lacks the name) read them as request
//! parameters, past every check the query got: `Cookie: offset=99999999` would reach deep
//! pages `max_offset` refuses.

use http::{HeaderMap, HeaderValue, header};

use super::query::{bracket_paths, folded, readings};

/// Removes from `headers`' `Cookie` fields every pair whose name a backend could read as one
/// of `controlled` (the names PHP and classic ASP.NET read); returns how many went. The caller
/// looks for a `Cookie` field first.
pub(super) fn drop_controlled(headers: &mut HeaderMap, controlled: &[&str]) -> usize {
    let folded: Vec<String> = controlled.iter().map(|name| folded(name)).collect();
    let mut dropped = 0;
    let mut kept: Vec<HeaderValue> = Vec::new();
    for value in headers.get_all(header::COOKIE) {
        // Split as bytes: a field with bytes that are not text is still split by PHP, which
        // cuts on `;` whatever the bytes around it.
        let pairs: Vec<&[u8]> = value
            .as_bytes()
            .split(|&b| b == b';')
            .map(<[u8]>::trim_ascii)
            .filter(|pair| !pair.is_empty())
            .collect();
        let left: Vec<&[u8]> = pairs
            .iter()
            .copied()
            .filter(|pair| !read_as_controlled(pair, &folded))
            .collect();
        dropped += pairs.len() - left.len();
        if left.len() == pairs.len() {
            kept.push(value.clone());
        } else if !left.is_empty()
            && let Ok(value) = HeaderValue::from_bytes(&left.join(&b"; "[..]))
        {
            kept.push(value);
        }
    }
    if dropped > 0 {
        headers.remove(header::COOKIE);
        for value in kept {
            headers.append(header::COOKIE, value);
        }
    }
    dropped
}

/// Whether PHP or classic ASP.NET would read the cookie `pair` as a controlled parameter: its
/// name in any case and encoding, and PHP's forms of it (`offset[]`, `.` and spaces as `_`,
/// `page[size]x`). Not Spring's `_`/`!` prefixes nor dotted properties: nothing reads those
/// from a cookie, and an application's own cookies keep their names.
fn read_as_controlled(pair: &[u8], folded_controlled: &[String]) -> bool {
    let name = pair.split(|&b| b == b'=').next().unwrap_or_default();
    let name = folded(&String::from_utf8_lossy(name.trim_ascii()));
    let paths = bracket_paths(&name);
    let [name, base, php, _spring] = readings(&name);
    [name, base, php]
        .into_iter()
        .chain(paths)
        .any(|reading| folded_controlled.contains(&reading))
}
