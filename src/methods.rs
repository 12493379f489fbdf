//! Methods a backend could read differently from pagegate. pagegate routes by the method as
//! sent; some frameworks do not:
//!
//! * WSGI frameworks upper-case it, so `get /events` runs the GET list handler while pagegate
//!   sees an unknown method `get` that no list route serves;
//! * `_method=GET` in the query (Express `method-override`, Rack, Laravel, Symfony) turns a
//!   `POST` into a GET list request;
//! * Rack merges a body's form parameters into the query's, so a GET with a body can carry a
//!   `limit` pagegate never saw.
//!
//! On a path some route serves (whatever its methods) a non-canonical spelling is refused
//! (400): methods are case-sensitive (RFC 9110 §9.1) and guessing is unsafe; let through, a
//! `get` misses a `methods: [GET]` route, its limits with it, and reaches the `default`
//! route's backend, which runs it as the GET. So is a `_method` in the query that would reach
//! another route than the request's own method (`POST /report?_method=GET`); one that reaches
//! the same route (a Rails form's `_method=patch`) passes. A GET or HEAD with a body is refused
//! everywhere unless the route (or `default`) sets `allow_read_body` (search APIs send GET with
//! a body). A body whose `Content-Type` fields, or the list in one, disagree about its kind (a
//! form or not, urlencoded or multipart) is refused everywhere (400): which one a backend
//! keeps differs. On a list path `Upgrade` requests are refused too: a list is served as
//! pages, never tunnelled. `CONNECT` is refused everywhere (405): pagegate is a reverse proxy, not a tunnel.

use http::{Method, header};

use crate::Request;

mod form;

pub(crate) use form::{CheckForm, FormCheckLayer, ScanForm, has_form, wanted as form_wanted};

/// Why a request's method is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum MethodError {
    /// `CONNECT` (405).
    #[error("CONNECT is not served: pagegate is a reverse proxy, not a tunnel")]
    Connect,
    /// A standard method spelled in another case on a routed path.
    #[error(
        "method `{sent}` is not `{standard}`: methods are case-sensitive and some backends would run `{standard}`; send `{standard}`"
    )]
    NonCanonical {
        /// The method as sent.
        sent: String,
        /// The standard method it folds to.
        standard: &'static str,
    },
    /// `_method` in the query names a method that would reach another route, or a read on a
    /// list path (where a form body's `_method` is read too).
    #[error(
        "query parameter {sent:?} asks the backend to run {method}: pagegate routes by the request's own method; send a {method} request instead"
    )]
    Override {
        /// The parameter as sent.
        sent: String,
        /// The method it names.
        method: &'static str,
    },
    /// An `Upgrade` (WebSocket) request on a list path: a list is served as pages, never as a
    /// tunnel.
    #[error(
        "a list path does not switch protocols: send a plain {method} request without `Upgrade`"
    )]
    UpgradeOnList {
        /// The request method.
        method: String,
    },
    /// A form body on a list path larger than the part pagegate reads to look for `_method`.
    #[error(
        "a form body on a list path is read whole to look for `_method`, and this one exceeds {max} bytes: send a smaller body"
    )]
    FormTooLarge {
        /// [`form::MAX_FORM_BYTES`].
        max: usize,
    },
    /// A body whose `Content-Type` fields (or the list in one) name different kinds of body:
    /// frameworks keep different ones, so one could parse a form (and its `_method`) that
    /// pagegate read as another kind.
    #[error(
        "the body's type is ambiguous: its Content-Type fields (or the list in one) name different kinds of body, and backends keep different ones; send one Content-Type field with one media type"
    )]
    AmbiguousType,
    /// A body pagegate reads for `_method` that is compressed: some backends inflate it before
    /// reading `_method` (Express's body-parser), so it must come as sent (415 with
    /// `Accept-Encoding: identity`, RFC 7694).
    #[error(
        "this request's body is read for `_method` and must not be compressed: send it without Content-Encoding"
    )]
    EncodedBody,
    /// A GET or HEAD with a body where the route does not allow one.
    #[error(
        "a {method} request must not carry a body here: some backends read parameters from it; send them in the query (a route that takes a body on {method}, such as a search API, sets `allow_read_body: true`)"
    )]
    BodyOnRead {
        /// GET or HEAD.
        method: &'static str,
    },
}

/// Standard methods, as they must be spelled.
const STANDARD: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// [`STANDARD`] as methods, in the same order.
const STANDARD_METHODS: [Method; 9] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::CONNECT,
    Method::OPTIONS,
    Method::TRACE,
    Method::PATCH,
];

/// The standard methods, by bit of [`STANDARD`], that `elsewhere` says would take a request to
/// another route than its own method does.
pub(crate) fn moves(elsewhere: impl Fn(&Method) -> bool) -> u16 {
    STANDARD_METHODS
        .iter()
        .enumerate()
        .filter(|(_, method)| elsewhere(method))
        .fold(0, |bits, (i, _)| bits | 1 << i)
}

/// The standard method other than `own` a `name=value` pair overrides to, if it is a `_method`
/// override: names are read as PHP reads them (leading spaces dropped, `.`, spaces and `[`
/// become `_`, any case), methods in any case.
fn override_of(name: &str, value: &str, own: &Method) -> Option<&'static str> {
    // Folded, a name starts with `_method` exactly when its first byte after leading spaces is
    // `_`, `.` or `[` and the next six spell `method` in any case: checked in place, since this
    // runs for every query parameter of every list request.
    let name = name.trim_start_matches(' ').as_bytes();
    let folds_to_override = name.len() >= 7
        && matches!(name[0], b'_' | b'.' | b'[')
        && name[1..7].eq_ignore_ascii_case(b"method");
    if !folds_to_override {
        return None;
    }
    STANDARD
        .into_iter()
        .find(|m| value.trim().eq_ignore_ascii_case(m) && *m != own.as_str())
}

/// The `_method` override in a request's query naming a standard method other than its own:
/// the parameter as sent, and the method.
pub(crate) fn query_override(req: &Request) -> Option<(String, &'static str)> {
    let query = req.uri().query()?;
    // Cheap first: most queries name no `method` at all.
    if !query
        .as_bytes()
        .windows(6)
        .any(|w| w.eq_ignore_ascii_case(b"method"))
    {
        return None;
    }
    // Rack 2, Perl's CGI and older Pythons split pairs at `;` too.
    query
        .split(['&', ';'])
        .flat_map(|pair| form_urlencoded::parse(pair.as_bytes()))
        .find_map(|(name, value)| {
            override_of(&name, &value, req.method()).map(|m| (format!("{name}={value}"), m))
        })
}

/// Where a request lands, as far as the method rules care.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Landing {
    /// Some route on its path has a list policy.
    pub list_path: bool,
    /// Some route serves its path, whatever its methods.
    pub routed_path: bool,
    /// Its query's `_method` would reach another route than its own method does (the router
    /// looks it up): a backend that honours the override would run a request pagegate routed,
    /// and limited, as another.
    pub override_moves: bool,
    /// The route it reaches (or `default`) lets GET and HEAD carry a body.
    pub read_body: bool,
    /// With a body a backend may read `_method` from: the methods (by bit of the standard
    /// list) whose `_method` there would take it to another route, or on a list path to a
    /// read (the router looks them up).
    pub form_moves: u16,
    /// Its path finds another route with `%2F` read as a separator than without
    /// ([`crate::route_table::AmbiguousPath`]): refused whatever its method.
    pub ambiguous_path: bool,
}

/// Checks a request's method where it lands.
pub(crate) fn check(req: &Request, at: Landing) -> Result<(), MethodError> {
    let method = req.method();
    if method == Method::CONNECT {
        return Err(MethodError::Connect);
    }
    let sent = method.as_str();
    if at.routed_path || at.list_path {
        if let Some(standard) = STANDARD
            .iter()
            .find(|s| s.eq_ignore_ascii_case(sent) && **s != sent)
        {
            return Err(MethodError::NonCanonical {
                sent: sent.to_owned(),
                standard,
            });
        }
        // An override to a read on a list path is refused whatever it reaches (a list read
        // pagegate never saw); any other only when it would reach another route (Rails and
        // Laravel forms say `_method=patch` to the route that serves both).
        if let Some((sent, overridden)) = query_override(req)
            && (at.override_moves || (at.list_path && matches!(overridden, "GET" | "HEAD")))
        {
            return Err(MethodError::Override {
                sent,
                method: overridden,
            });
        }
    }
    if form::ambiguous_type(req) {
        return Err(MethodError::AmbiguousType);
    }
    if at.form_moves != 0 && form::encoded(req) {
        return Err(MethodError::EncodedBody);
    }
    if at.list_path && req.headers().contains_key(header::UPGRADE) {
        return Err(MethodError::UpgradeOnList {
            method: sent.to_owned(),
        });
    }
    let read = match *method {
        Method::GET => Some("GET"),
        Method::HEAD => Some("HEAD"),
        _ => None,
    };
    if let (Some(method), false) = (read, at.read_body) {
        let headers = req.headers();
        let length = headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
        // HTTP/2 bodies need no length header: the body itself says whether it has ended. Off
        // list paths only a declared body counts: some HTTP/2 clients end a bodiless GET with
        // an empty DATA frame rather than on its HEADERS.
        if length
            || headers.contains_key(header::TRANSFER_ENCODING)
            || (at.list_path && !http_body::Body::is_end_stream(req.body()))
        {
            return Err(MethodError::BodyOnRead { method });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
