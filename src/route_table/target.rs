//! Request targets a backend would read otherwise than pagegate: a `Host` that is not a host
//! name, and dot segments that a base path would not contain.

use std::borrow::Cow;

/// A `Host` (or HTTP/2 `:authority`) that is not a host name with an optional port: refused
/// (400), never passed on. pagegate quotes the host into `Forwarded` and passes it as
/// `X-Forwarded-Host`; a `Host: a;for=1.2.3.4;proto=https` would read there, to a parser that
/// splits on `;` without honouring quotes (Rack before its quote-aware parser), as a second
/// `for` and `proto`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the Host header is not a host name with an optional port: send only letters, digits, \
     `-`, `.`, `_`, `~`, `:`, and `[` `]` around an IPv6 address, once"
)]
pub(crate) struct BadHost;

/// A path with a `.` or `..` segment (`%2e` counts) on a route whose upstream has a base path:
/// `/../admin` becomes `/public/../admin` upstream, which nginx, Tomcat, IIS and Apache resolve
/// to `/admin`, outside the base path the operator exposed. Refused (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the path holds a `.` or `..` segment, which would leave this route's base path at the \
     backend: send the path without them"
)]
pub(crate) struct DotPath;

/// Why a request cannot go to any backend, whatever route it landed on: a NUL byte in its
/// path ([`super::NulPath`]), or a `Host` that is no host name ([`BadHost`]).
pub(crate) fn unfit(req: &crate::Request) -> Option<crate::BoxError> {
    if super::nul(req.uri().path()) {
        return Some(super::NulPath.into());
    }
    bad_host(req).then(|| BadHost.into())
}

/// Whether the request's host is unfit to pass on: several `Host` headers, or one (or an
/// `:authority`) with a character no host name or address has, userinfo included. An empty
/// `Host` (a client with no authority to name) passes.
fn bad_host(req: &crate::Request) -> bool {
    let mut hosts = req.headers().get_all(http::header::HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (_, Some(_)) => return true,
        (Some(host), None) => host.as_bytes(),
        (None, None) => match req.uri().authority() {
            Some(authority) => authority.as_str().as_bytes(),
            None => return false,
        },
    };
    !host
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b"-._~:[]".contains(&b))
}

/// Whether a raw path holds a dot segment as some backend reads it: `.` or `..` between
/// separators, `%2e` for a dot, `\`, `%2f` or `%5c` for a separator, and a `;` (or `%3b`)
/// parameter after it, as the router reads them.
pub(crate) fn dot_segments(path: &str) -> bool {
    if !path.contains('.') && !path.contains('%') {
        return false;
    }
    let decoded: Cow<'_, str> = if path.contains('%') {
        super::decode_unreserved(path)
            .to_ascii_lowercase()
            .replace("%2f", "/")
            .replace("%5c", "/")
            .replace("%3b", ";")
            .into()
    } else {
        path.into()
    };
    decoded
        .split(['/', '\\'])
        .any(|segment| matches!(segment.split(';').next(), Some("." | "..")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_host(hosts: &[&str]) -> crate::Request {
        let mut req = http::Request::new(crate::body::full(bytes::Bytes::new()));
        for host in hosts {
            req.headers_mut()
                .append(http::header::HOST, host.parse().unwrap());
        }
        req
    }

    #[test]
    fn hosts_are_names_and_ports() {
        for good in [
            "",
            "example.com",
            "a-b.example:8080",
            "127.0.0.1:3000",
            "[::1]:80",
        ] {
            assert!(!bad_host(&with_host(&[good])), "{good:?}");
        }
        let bad = [
            "a;for=1.2.3.4;proto=https",
            "u:p@host",
            "a b",
            "a\"b",
            "a,b",
            "a/b",
        ];
        for host in bad {
            assert!(bad_host(&with_host(&[host])), "{host:?}");
        }
        assert!(bad_host(&with_host(&["a", "b"])), "two Host headers");
        let mut h2 = http::Request::new(crate::body::full(bytes::Bytes::new()));
        *h2.uri_mut() = "https://u@example.com/x".parse().unwrap();
        assert!(bad_host(&h2), "userinfo in :authority");
        *h2.uri_mut() = "https://example.com/x".parse().unwrap();
        assert!(!bad_host(&h2));
    }

    #[test]
    fn dot_segments_in_every_spelling() {
        for path in [
            "/../admin",
            "/a/./b",
            "/%2e%2e/admin",
            "/%2E./x",
            "/a\\..\\b",
            "/a%2f..%2fb",
            "/..;x/y",
            "/..%3Bx/y",
            "/a/..",
        ] {
            assert!(dot_segments(path), "{path:?}");
        }
        for path in [
            "/",
            "/events",
            "/a.b/c",
            "/...",
            "/.well-known/x",
            "/a..b",
            "/%41",
        ] {
            assert!(!dot_segments(path), "{path:?}");
        }
    }
}
