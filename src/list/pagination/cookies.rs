//! Cookies named like paging parameters, dropped from list requests. PHP's `$_REQUEST` (with no
//! `request_order` set, as the official images ship, cookies come last and win) and classic
//! ASP.NET's `Request["offset"]` (a cookie when the query lacks the name) read them as request
//! parameters, past every check the query got: `Cookie: offset=99999999` would reach deep
//! pages `max_offset` refuses.

use http::{HeaderMap, HeaderValue, header};

use super::query::{folded, readings};

/// Removes from `headers`' `Cookie` fields every pair whose name a backend could read as one
/// of `controlled` (the names PHP and classic ASP.NET read); returns how many went. The caller
/// looks for a `Cookie` field first.
pub(super) fn drop_controlled(headers: &mut HeaderMap, controlled: &[&str]) -> usize {
    let folded: Vec<String> = controlled.iter().map(|name| folded(name)).collect();
    let mut dropped = 0;
    let mut kept: Vec<HeaderValue> = Vec::new();
    for value in headers.get_all(header::COOKIE) {
        // A field that is not text is passed as it is: no parser reads a name out of it.
        let Ok(text) = value.to_str() else {
            kept.push(value.clone());
            continue;
        };
        let pairs: Vec<&str> = text
            .split(';')
            .map(str::trim)
            .filter(|pair| !pair.is_empty())
            .collect();
        let left: Vec<&str> = pairs
            .iter()
            .copied()
            .filter(|pair| !read_as_controlled(pair, &folded))
            .collect();
        dropped += pairs.len() - left.len();
        if left.len() == pairs.len() {
            kept.push(value.clone());
        } else if !left.is_empty()
            && let Ok(value) = HeaderValue::from_str(&left.join("; "))
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
/// name in any case and encoding, and PHP's forms of it (`offset[]`, `.` and spaces as `_`).
/// Not Spring's `_`/`!` prefixes nor dotted properties: nothing reads those from a cookie, and
/// an application's own cookies keep their names.
fn read_as_controlled(pair: &str, folded_controlled: &[String]) -> bool {
    let name = pair.split_once('=').map_or(pair, |(name, _)| name);
    let [name, base, php, _spring] = readings(&folded(name));
    [name, base, php]
        .iter()
        .any(|reading| folded_controlled.contains(reading))
}
