//! Header rules at the proxy hop: hop-by-hop removal (RFC 9110 §7.6.1), method overrides and
//! their disguises, HTTP/2 to HTTP/1, redirects to the upstream; forwarding headers and `Host`
//! in [`forwarding`].

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1, plus the obsolete
/// `Keep-Alive` and `Proxy-Connection` that clients still send).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// End-to-end headers a `Connection` header cannot remove: pagegate decided by them, or set
/// them (`Accept-Encoding: identity` on list requests, the trace context).
const KEPT: [&str; 7] = [
    crate::telemetry::REQUEST_ID,
    "content-type",
    "content-length",
    "host",
    "accept-encoding",
    "traceparent",
    "tracestate",
];

/// Headers that make some frameworks run a different method, or serve another path, than the
/// one pagegate routed by: `POST /events` with `X-HTTP-Method-Override: GET` (Rack::
/// MethodOverride, ASP.NET, Express method-override) would reach the list handler without a
/// list policy, and `GET /health` with `X-Original-URL: /events` (Zend Framework 1, and
/// Symfony's HttpFoundation before CVE-2018-14773, take the request URI from it, or from
/// `X-Rewrite-URL`) too. Removed even from trusted proxies: IIS sets them for its own rewrites,
/// never for a backend behind another proxy.
const METHOD_OVERRIDES: [HeaderName; 5] = [
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-original-url"),
    HeaderName::from_static("x-rewrite-url"),
];

/// Names pagegate sets or decides by, besides the hop-by-hop ones, the overrides and the
/// headers a configuration's limits and identities read (`decided`): a spelling with `_` for
/// `-` is dropped ([`remove_method_overrides`]).
const DECIDED: [&str; 11] = [
    "host",
    "content-type",
    "content-length",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-real-ip",
    crate::telemetry::REQUEST_ID,
];

/// Removes method-override headers: pagegate routes by the request method, so the backend
/// must run that method. So are names that spell one of them, a forwarding header, a
/// hop-by-hop header or another header pagegate decides by with `_` for `-`: CGI-style servers
/// (Puma before 6.4.3, Unicorn, Thin, PHP-FPM behind FastCGI, WSGI) turn both `-` and `_` into
/// `_`, so `X_HTTP_Method_Override: GET` reaches Rack as `HTTP_X_HTTP_METHOD_OVERRIDE`, and
/// `X_Forwarded_For` may override the address pagegate set. nginx drops every name with `_`
/// by default (`underscores_in_headers off`); pagegate drops only these, so other names with
/// `_` (an `api_key`) still pass, unless `decided` (the headers the configuration's limits and
/// identities read) holds another spelling of them with `_` read as `-`: `X_Api_Key` cannot
/// stand in for the `X-Api-Key` pagegate keyed a rate by, nor `api-key` (which Puma 6.4.3 and
/// later keeps over `api_key`) for a configured `api_key`.
pub(crate) fn remove_method_overrides(headers: &mut HeaderMap, decided: &[HeaderName]) {
    // A decided name spelled with `_` has dashed twins to look for (rare: checked only then).
    let twins = decided.iter().any(|name| name.as_str().contains('_'));
    // One pass over the few names a message has, instead of a hashed lookup per name.
    if !twins
        && !headers
            .keys()
            .any(|name| METHOD_OVERRIDES.contains(name) || name.as_str().contains('_'))
    {
        return;
    }
    for name in &METHOD_OVERRIDES {
        headers.remove(name);
    }
    remove_names(headers, |name| {
        (twins || name.as_str().contains('_')) && disguises(name.as_str(), decided)
    });
}

/// Removes a client's trace context, in every format a tracer reads to take a request's
/// trace id or its sampling decision from, but for `decided`; W3C's `traceparent` and
/// `tracestate` only with `w3c` (without, they are pagegate's own span's). Spelled with `_`
/// for `-` too, as CGI-style servers read them. One pass over the names a request has settles
/// the common case of none.
pub(crate) fn remove_trace_context(headers: &mut HeaderMap, decided: &[HeaderName], w3c: bool) {
    remove_names(headers, |name| {
        trace_context(&dashed(name), w3c) && !decided.contains(name)
    });
}

/// Removes every header whose name `matches`. One pass over the few names a message has
/// settles the common case of none, with no hashed lookup a name.
fn remove_names(headers: &mut HeaderMap, matches: impl Fn(&HeaderName) -> bool) {
    if !headers.keys().any(&matches) {
        return;
    }
    let found: Vec<HeaderName> = headers
        .keys()
        .filter(|name| matches(name))
        .cloned()
        .collect();
    for name in found {
        headers.remove(name);
    }
}

/// `name` with `_` read as `-`, as CGI-style servers read both (copied only when it has one).
fn dashed(name: &HeaderName) -> std::borrow::Cow<'_, str> {
    let spelled = name.as_str();
    if spelled.contains('_') {
        spelled.replace('_', "-").into()
    } else {
        spelled.into()
    }
}

/// Whether `name` (lower case, dashed) carries trace context a client could pick its trace
/// ids or force sampling with: Zipkin's B3 (`x-b3-sampled`, `b3`), Jaeger's (`uber-trace-id`'s
/// flags; `jaeger-debug-id` forces a trace), OpenTracing's `ot-tracer-*`, Datadog's sampling
/// priority, AWS X-Ray's `Sampled=1`, Google Cloud's `o=1`, Sentry's `sentry-trace`, gRPC's
/// binary context, SkyWalking's `sw8`, Elastic's, New Relic's (and its older cross-application
/// headers), Instana's, Dynatrace's, Honeycomb's and AppDynamics'; and W3C's with `w3c`.
/// Baggage (`baggage`, `uberctx-*`) picks neither, and passes.
fn trace_context(name: &str, w3c: bool) -> bool {
    match name {
        "traceparent" | "tracestate" => w3c,
        "b3"
        | "uber-trace-id"
        | "jaeger-debug-id"
        | "x-amzn-trace-id"
        | "x-cloud-trace-context"
        | "sentry-trace"
        | "grpc-trace-bin"
        | "sw8"
        | "elastic-apm-traceparent"
        | "newrelic"
        | "x-newrelic-id"
        | "x-newrelic-transaction"
        | "x-dynatrace"
        | "x-honeycomb-trace"
        | "singularityheader" => true,
        _ => ["x-b3-", "ot-tracer-", "x-datadog-", "x-instana-"]
            .iter()
            .any(|prefix| name.starts_with(prefix)),
    }
}

/// Whether `name` (lower case) reads as a header pagegate controls once `_` is `-`, spelled
/// otherwise: one of `decided` spelled another way, or a fixed one spelled with `_`.
fn disguises(name: &str, decided: &[HeaderName]) -> bool {
    let dashed = |b: u8| if b == b'_' { b'-' } else { b };
    let twin = |controlled: &str| {
        controlled != name
            && controlled.len() == name.len()
            && controlled
                .bytes()
                .zip(name.bytes())
                .all(|(a, b)| dashed(a) == dashed(b))
    };
    METHOD_OVERRIDES
        .iter()
        .chain(&HOP_BY_HOP)
        .chain(decided)
        .any(|controlled| twin(controlled.as_str()))
        || DECIDED.iter().any(|controlled| twin(controlled))
}

/// Removes hop-by-hop headers, including every header the `Connection` header names but
/// those pagegate decided by ([`KEPT`], and `decided`: the headers the configuration's limits
/// and identities read, so the backend sees the key pagegate counted).
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap, decided: &[HeaderName]) {
    // Most messages carry none, or only `Connection: keep-alive` (or `close`), which names no
    // other header: one pass over their names settles it.
    let mut found = false;
    for (name, value) in headers.iter() {
        if name == header::CONNECTION {
            let names_others = crate::http1::items(value.as_bytes()).any(|token| {
                !token.eq_ignore_ascii_case(b"keep-alive") && !token.eq_ignore_ascii_case(b"close")
            });
            if names_others {
                found = true;
                break;
            }
        } else if HOP_BY_HOP.contains(name) {
            found = true;
            break;
        }
    }
    if !found {
        headers.remove(header::CONNECTION);
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        // What pagegate decided by stays: the request id is pagegate's by now (set or vetted
        // by the access log), and the body's type and length are what the form check read (a
        // `Connection: content-type` would otherwise hide a form from a backend that then
        // parses the body untyped, as Rack does a POST's).
        .filter(|name| !KEPT.contains(&name.as_str()) && !decided.contains(name))
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// A backend's response headers for the client: without hop-by-hop headers, but `Trailer`,
/// which is end-to-end (RFC 9110 §6.6.2): hyper sends an HTTP/1 client only the trailer
/// fields it declares, so without it the backend's trailers would be dropped. A
/// `Content-Length` beside `Transfer-Encoding` goes: the body is framed by the latter, as
/// hyper read it, and the client's side would cut the body at the length (RFC 9112 §6.3).
pub(crate) fn clean_response(headers: &mut HeaderMap) {
    if headers.contains_key(header::TRANSFER_ENCODING) {
        headers.remove(header::CONTENT_LENGTH);
    }
    let trailer: Vec<HeaderValue> = if headers.contains_key(header::TRAILER) {
        headers.get_all(header::TRAILER).iter().cloned().collect()
    } else {
        Vec::new()
    };
    remove_hop_by_hop(headers, &[]);
    for value in trailer {
        headers.append(header::TRAILER, value);
    }
}

/// Makes a request, whatever version the client spoke, one for the upstream's HTTP/1.1:
///
/// * HTTP/2 and HTTP/3 clients may split `Cookie` into crumbs (RFC 9113 §8.2.3); an HTTP/1.1
///   server reads one field, so they are joined with "; ";
/// * a GET or HEAD body of unknown length says `Transfer-Encoding: chunked` where the route
///   allows one (`read_body`): hyper's client sends one as no body at all unless the request
///   says so (the client's own `Transfer-Encoding` went with the hop-by-hop headers), so a
///   search API's streamed body would arrive empty. Elsewhere it is sent with no body: an
///   HTTP/2 GET needs no length, and off list paths one ending in an empty DATA frame passes
///   the method check, but its body (empty or not) must not reach a backend that would read
///   parameters from it.
pub(crate) fn to_http1(
    parts: &mut http::request::Parts,
    size: &http_body::SizeHint,
    read_body: bool,
) {
    let headers = &mut parts.headers;
    if parts.version >= http::Version::HTTP_2
        && headers.get_all(header::COOKIE).iter().nth(1).is_some()
    {
        let crumbs: Vec<&[u8]> = headers
            .get_all(header::COOKIE)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect();
        if let Ok(joined) = HeaderValue::from_bytes(&crumbs.join(&b"; "[..])) {
            headers.insert(header::COOKIE, joined);
        }
    }
    if read_body
        && matches!(parts.method, http::Method::GET | http::Method::HEAD)
        && size.exact().is_none()
        && !headers.contains_key(header::CONTENT_LENGTH)
    {
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
    }
    parts.version = http::Version::HTTP_11;
}

/// Rewrites `Location` and `Content-Location` values that start with `prefix` (the upstream's
/// `http://authority/base_path`, lower case; compared without case) to the path after it, a
/// path on pagegate: `http://10.0.0.2:8000/api/events/` becomes `/events/`. Values that point
/// elsewhere, or at the upstream outside its base path, are left alone.
pub(crate) fn rewrite_redirects(headers: &mut HeaderMap, prefix: &str) {
    for name in [header::LOCATION, header::CONTENT_LOCATION] {
        let Some(value) = headers.get(&name) else {
            continue;
        };
        let bytes = value.as_bytes();
        let Some(rest) = bytes
            .get(..prefix.len())
            .filter(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
            .map(|_| &bytes[prefix.len()..])
        else {
            continue;
        };
        // Only at a boundary: `http://app:80/api` must not rewrite `http://app:8000/...` or
        // `http://app:80/apix`.
        let path: Vec<u8> = match rest.first() {
            None => b"/".to_vec(),
            // `//host` or `/\host` would be read as another origin: one `/` only. Browsers
            // delete tabs and newlines anywhere in a URL, so `/\t/host` is `//host` too.
            Some(b'/') => {
                let tail: Vec<u8> = rest
                    .iter()
                    .copied()
                    .filter(|b| !matches!(b, b'\t' | b'\r' | b'\n'))
                    .collect();
                let start = tail
                    .iter()
                    .take_while(|&&b| b == b'/' || b == b'\\')
                    .count();
                [b"/".as_slice(), &tail[start..]].concat()
            }
            Some(b'?' | b'#') => [b"/".as_slice(), rest].concat(),
            Some(_) => continue,
        };
        if let Ok(value) = HeaderValue::from_bytes(&path) {
            headers.insert(name, value);
        }
    }
}

mod forwarding;

pub(crate) use forwarding::set_forwarding;

#[cfg(test)]
mod tests;
