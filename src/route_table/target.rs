//! Request targets a backend would read otherwise than pagegate: a `Host` that is not a host
//! name, and path segments pagegate's router drops but a backend may read as a value.

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

/// A path with a segment the router drops but a backend may read as a value
/// ([`hollow_segments`]): refused (400) on every route. Backends disagree on them, so no
/// route pagegate picks is safe. `/exports/../events` is `/events` to pagegate (and to nginx,
/// Tomcat and IIS), but Express, Django and Starlette match it as `/exports/{*rest}` and run
/// the export without its limits; `/orgs/./events` is `/orgs/events` to pagegate, but the
/// `/orgs/{org}/events` list handler to them, uncapped. Under an upstream's base path,
/// `/../admin` would also leave it. Browsers and HTTP client libraries resolve `.` and `..`
/// before sending, but not the other hollow segments: a client that sends `/search/%20` or
/// `/posts/...` is refused too, and should send the value in the query instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the path holds a segment that backends read differently: `.`, `..`, one of only dots or \
     spaces, or only a `;parameter`: send the path without it"
)]
pub(crate) struct DotPath;

/// The `%2F` in a path decides which route serves it: read as a separator (as WSGI and ASGI
/// servers do) it finds another route than read as part of a segment (as Express and Go do).
/// pagegate cannot tell which its backend does, so the request is refused (400) rather than
/// given one route's limits while the backend serves the other.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the path's `%2F` (or `%5C`) finds another route when read as a `/` than when not: send \
     the path without it"
)]
pub(crate) struct AmbiguousPath;

/// Why a request cannot go to any backend, whatever route it landed on: a NUL byte in its
/// path ([`super::NulPath`]), a hollow segment ([`DotPath`]), or a `Host` that is no host
/// name ([`BadHost`]).
pub(crate) fn unfit(req: &crate::Request) -> Option<crate::BoxError> {
    let path = req.uri().path();
    if super::nul(path) {
        return Some(super::NulPath.into());
    }
    if hollow_segments(path) {
        return Some(DotPath.into());
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

/// Whether a raw path holds a segment the router drops (`super::normalize`) but a backend
/// may read as a value: a dot segment (`.`, `..`), a segment of only dots and spaces (`...`,
/// `%20`), or one of only a `;parameter` anywhere but last (Tomcat's `/;jsessionid=…` stays
/// served). Read as the router reads them: `%2e` is a dot, `\`, `%2f` and `%5c` separate,
/// `%3b` is a `;`. Empty segments (`//`, a trailing `/`) are not hollow: the backends that
/// route by segments match none of them to a `{param}`.
pub(crate) fn hollow_segments(path: &str) -> bool {
    // Most paths have no dot, escape or `;`: one pass over their bytes settles it.
    if !path.bytes().any(|b| matches!(b, b'.' | b'%' | b';')) {
        return false;
    }
    // Spelled as the router's widest reading spells it; without an escape, only a `\` would
    // differ, and it separates here too.
    let spelled: Cow<'_, str> = if path.contains('%') {
        super::normal::spelled(path, super::normal::Separators::All).into()
    } else {
        path.into()
    };
    let mut segments = spelled.split(['/', '\\']).skip(1).peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        let hollow = match segment.split_once(';') {
            Some(("", _)) => !last,
            Some((name, _)) => name.bytes().all(|b| b == b'.' || b == b' '),
            None => !segment.is_empty() && segment.bytes().all(|b| b == b'.' || b == b' '),
        };
        if hollow {
            return true;
        }
    }
    false
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
    fn hollow_segments_in_every_spelling() {
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
            "/orgs/./events",
            "/orgs/.../events",
            "/...",
            "/orgs/%20/events",
            "/orgs/.%20/events",
            "/orgs/;x/events",
            "/orgs/%3Bx/events",
            "/a/%2e",
        ] {
            assert!(hollow_segments(path), "{path:?}");
        }
        for path in [
            "/",
            "/events",
            "/a.b/c",
            "/.well-known/x",
            "/a..b",
            "/%41",
            "//events",
            "/events/",
            "/events;v=1",
            "/events.",
            "/;jsessionid=1",
            "/app/;jsessionid=1",
            "/a%20b",
        ] {
            assert!(!hollow_segments(path), "{path:?}");
        }
    }
}
