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
//! On a list path (some route there has a list policy, whatever its methods) such requests are
//! refused (400): methods are case-sensitive (RFC 9110 §9.1) and guessing is unsafe. So are
//! `Upgrade` requests there: a list is served as pages, never tunnelled. `CONNECT`
//! is refused everywhere (405): pagegate is a reverse proxy, not a tunnel.

use http::{Method, header};

use crate::Request;

mod form;

pub use form::{FormCheck, FormCheckLayer, ListPath, MAX_FORM_BYTES};

/// Why a request's method is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MethodError {
    /// `CONNECT` (405).
    #[error("CONNECT is not served: pagegate is a reverse proxy, not a tunnel")]
    Connect,
    /// A standard method spelled in another case on a list path.
    #[error(
        "method `{sent}` is not `{standard}`: methods are case-sensitive and some backends would run `{standard}`; send `{standard}`"
    )]
    NonCanonical {
        /// The method as sent.
        sent: String,
        /// The standard method it folds to.
        standard: &'static str,
    },
    /// `_method` in the query names a read method on a list path.
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
        /// [`MAX_FORM_BYTES`].
        max: usize,
    },
    /// A GET or HEAD with a body on a list path.
    #[error(
        "a {method} request to a list path must not carry a body: some backends read list parameters from it; send them in the query"
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

/// The read method a `name=value` pair overrides to, if it is a `_method` override: names are
/// read as PHP reads them (leading spaces dropped, `.`, spaces and `[` become `_`, any case).
fn override_of(name: &str, value: &str) -> Option<&'static str> {
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
    ["GET", "HEAD"]
        .into_iter()
        .find(|m| value.trim().eq_ignore_ascii_case(m))
}

/// Checks a request's method; `list_path` says whether some route on its path is a list route.
pub fn check(req: &Request, list_path: bool) -> Result<(), MethodError> {
    let method = req.method();
    if method == Method::CONNECT {
        return Err(MethodError::Connect);
    }
    if !list_path {
        return Ok(());
    }
    let sent = method.as_str();
    if let Some(standard) = STANDARD
        .iter()
        .find(|s| s.eq_ignore_ascii_case(sent) && **s != sent)
    {
        return Err(MethodError::NonCanonical {
            sent: sent.to_owned(),
            standard,
        });
    }
    if let Some(query) = req.uri().query() {
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            if let Some(method) = override_of(&name, &value) {
                return Err(MethodError::Override {
                    sent: format!("{name}={value}"),
                    method,
                });
            }
        }
    }
    if req.headers().contains_key(header::UPGRADE) {
        return Err(MethodError::UpgradeOnList {
            method: sent.to_owned(),
        });
    }
    let read = match *method {
        Method::GET => Some("GET"),
        Method::HEAD => Some("HEAD"),
        _ => None,
    };
    if let Some(method) = read {
        let headers = req.headers();
        let length = headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
        // HTTP/2 bodies need no length header: the body itself says whether it has ended.
        if length
            || headers.contains_key(header::TRANSFER_ENCODING)
            || !http_body::Body::is_end_stream(req.body())
        {
            return Err(MethodError::BodyOnRead { method });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn request(method: &str, target: &str, headers: &[(&str, &str)]) -> Request {
        let mut builder = http::Request::builder().method(method).uri(target);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder
            .body(crate::body::full(Bytes::new()))
            .expect("request")
    }

    #[test]
    fn list_paths_refuse_what_a_backend_could_read_as_a_list_read() {
        let refused = [
            ("get", "/events", vec![]),
            ("Get", "/events", vec![]),
            ("head", "/events", vec![]),
            ("pOsT", "/events", vec![]),
            ("POST", "/events?_method=GET", vec![]),
            ("POST", "/events?a=1&_method=get", vec![]),
            ("PUT", "/events?_METHOD=head", vec![]),
            ("POST", "/events?%5Fmethod=GET", vec![]),
            ("POST", "/events?_method[]=GET", vec![]),
            ("POST", "/events?.method=GET", vec![]),
            ("POST", "/events?%5Bmethod=head", vec![]),
            ("GET", "/events", vec![("content-length", "12")]),
            ("GET", "/events", vec![("transfer-encoding", "chunked")]),
            ("HEAD", "/events", vec![("content-length", "1")]),
            (
                "GET",
                "/events",
                vec![("connection", "upgrade"), ("upgrade", "websocket")],
            ),
        ];
        for (method, target, headers) in refused {
            let req = request(method, target, &headers);
            assert!(check(&req, true).is_err(), "{method} {target} {headers:?}");
        }
        let passed = [
            ("GET", "/events?limit=5", vec![("content-length", "0")]),
            ("POST", "/events?_method=DELETE", vec![]),
            ("POST", "/events", vec![("content-length", "12")]),
            ("PURGE", "/events", vec![]),
            ("get", "/other", vec![]),
        ];
        for (method, target, headers) in passed {
            let req = request(method, target, &headers);
            let list_path = target.starts_with("/events");
            assert_eq!(check(&req, list_path), Ok(()), "{method} {target}");
        }
    }

    #[test]
    fn connect_is_refused_everywhere() {
        let req = http::Request::builder()
            .method(Method::CONNECT)
            .uri("example.com:443")
            .body(crate::body::full(Bytes::new()))
            .expect("request");
        assert_eq!(check(&req, false), Err(MethodError::Connect));
    }
}
