//! `_method` in form bodies off list paths: a POST whose form says `_method=GET` would run, on
//! Rack, Laravel, Symfony or Express with method-override, as the GET a rate-limited route
//! serves; pagegate scans the body as it streams and refuses it before the backend has a whole
//! request, while uploads of any size that name no such method pass untouched (real sockets).

use std::sync::{Arc, Mutex};

use crate::support::{Proxy, Upstream, json_response};
use bytes::Bytes;
use http_body_util::BodyExt;

/// A backend that reads each request body whole and records (method, path, bytes read or
/// `None` when the body never completed).
async fn reading_backend() -> (Upstream, Arc<Mutex<Vec<(String, String, Option<usize>)>>>) {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&bodies);
    let upstream = Upstream::start(move |req: http::Request<hyper::body::Incoming>| {
        let seen = Arc::clone(&seen);
        async move {
            let method = req.method().to_string();
            let path = req.uri().path().to_owned();
            let read = req
                .into_body()
                .collect()
                .await
                .ok()
                .map(|b| b.to_bytes().len());
            seen.lock().expect("lock").push((method, path, read));
            json_response("{}")
        }
    })
    .await;
    (upstream, bodies)
}

const YAML: &str = "
default: {action: pass, upstream: app}
upstreams: {app: {url: '{upstream}'}}
routes:
  - {name: export, path: /export, methods: [GET], upstream: app, limits: {rate: {per_client: {requests: 1, per: 1m}}}}
  - {name: posts, path: /posts, upstream: app}
  - {name: feed, path: /feed, methods: [GET, POST], upstream: app, list: {}}
  - {name: purge, path: /feed, methods: [DELETE], upstream: app, limits: {rate: {per_client: {requests: 1, per: 1m}}}}
";

fn post(
    proxy: &Proxy,
    path: &str,
    content_type: &str,
    body: impl Into<Bytes>,
) -> http::Request<pagegate::Body> {
    http::Request::post(proxy.url(path))
        .header("content-type", content_type)
        .body(crate::support::full(body))
        .expect("request")
}

#[tokio::test]
async fn a_form_override_that_would_reach_another_route_is_refused_mid_stream() {
    let (upstream, bodies) = reading_backend().await;
    let proxy = Proxy::start(YAML, &upstream).await;
    let url = "application/x-www-form-urlencoded";
    let multipart = "multipart/form-data; boundary=b";
    let part = |name: &str, value: &str| {
        format!("--b\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
    };
    // Past 64 KiB of padding first: the scan has no size cap.
    let padding = "x".repeat(200_000);
    let refused = [
        (url, "a=1&_method=GET".to_owned()),
        (url, format!("pad={padding}&%5Fmethod=get")),
        (url, format!("_METHOD=HEAD&pad={padding}")),
        (
            multipart,
            format!(
                "{}{}--b--\r\n",
                part("file", &padding),
                part("_method", "GET")
            ),
        ),
    ];
    for (kind, body) in refused {
        let got = crate::support::send(post(&proxy, "/export", kind, body.clone())).await;
        let problem = got.problem(400);
        assert_eq!(
            problem["type"], "urn:pagegate:problem:ambiguous-method",
            "{kind}"
        );
    }
    // The backend never had a whole request to run as the GET.
    for (method, path, read) in bodies.lock().expect("lock").iter() {
        assert_eq!((method.as_str(), path.as_str()), ("POST", "/export"));
        assert_eq!(*read, None, "a refused body never completes on the backend");
    }
    // The route's own GET is still served, within its limit.
    assert_eq!(crate::support::get(&proxy.url("/export")).await.status, 200);
    proxy.stop().await;
}

#[tokio::test]
async fn an_untyped_post_to_a_list_route_of_every_method_cannot_read_as_a_get() {
    // Rack parses a POST body with no `Content-Type` as a form; the list route serves POST
    // too, so `_method=GET` moves no route but would skip the list policy.
    let (upstream, bodies) = reading_backend().await;
    let proxy = Proxy::start(YAML, &upstream).await;
    let untyped = |body: &'static str| {
        http::Request::post(proxy.url("/feed"))
            .body(crate::support::full(body))
            .expect("request")
    };
    let got = crate::support::send(untyped("_method=GET&limit=99999")).await;
    assert_eq!(
        got.problem(400)["type"],
        "urn:pagegate:problem:ambiguous-method"
    );
    assert_eq!(
        crate::support::send(untyped("{\"a\": 1}")).await.status,
        200
    );
    let seen = bodies.lock().expect("lock").clone();
    assert_eq!(seen.last(), Some(&("POST".into(), "/feed".into(), Some(8))));
    let refused = &seen[..seen.len() - 1];
    assert!(
        refused.iter().all(|(.., read)| read.is_none()),
        "the refused body never completed on the backend: {seen:?}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn uploads_and_overrides_that_stay_on_their_route_pass_whole() {
    let (upstream, bodies) = reading_backend().await;
    let proxy = Proxy::start(YAML, &upstream).await;
    let big = "y".repeat(1 << 20);
    // Rails and Laravel forms: `_method=patch` to a route that serves every method; an upload
    // of 1 MiB; a form on /export naming a method that reaches the same place (default).
    let cases = [
        (
            "/posts",
            "application/x-www-form-urlencoded",
            format!("_method=patch&title={big}"),
        ),
        (
            "/posts",
            "multipart/form-data; boundary=b",
            format!(
                "--b\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE\r\n--b\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\n{big}\r\n--b--\r\n"
            ),
        ),
        (
            "/export",
            "application/x-www-form-urlencoded",
            format!("_method=PUT&data={big}"),
        ),
        (
            "/export",
            "application/x-www-form-urlencoded",
            format!("title={big}"),
        ),
    ];
    for (path, kind, body) in cases {
        let length = body.len();
        let got = crate::support::send(post(&proxy, path, kind, body)).await;
        assert_eq!(got.status, 200, "{path} {kind}: {}", got.text());
        let last = bodies.lock().expect("lock").last().cloned().expect("seen");
        assert_eq!(
            last.2,
            Some(length),
            "{path} {kind}: the body arrived whole"
        );
    }
    proxy.stop().await;
}

#[tokio::test]
async fn a_body_of_ambiguous_type_is_refused_before_the_backend() {
    // Frameworks keep different fields of several `Content-Type`s (or entries of a list in
    // one): pagegate scanning the first as urlencoded would miss the multipart `_method` a
    // backend keeping the other reads.
    let (upstream, bodies) = reading_backend().await;
    let proxy = Proxy::start(YAML, &upstream).await;
    let body = "--b\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nGET\r\n--b--\r\n";
    let multipart = "multipart/form-data; boundary=b";
    let mut several = post(&proxy, "/export", "", body);
    several
        .headers_mut()
        .append("content-type", multipart.parse().expect("value"));
    let list = post(&proxy, "/export", &format!("text/plain, {multipart}"), body);
    for request in [several, list] {
        let got = crate::support::send(request).await;
        let problem = got.problem(400);
        assert_eq!(problem["type"], "urn:pagegate:problem:ambiguous-method");
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|d| d.contains("send one Content-Type field")),
            "{problem}"
        );
    }
    assert!(
        bodies.lock().expect("lock").is_empty(),
        "nothing reached it"
    );
    // A comma inside a quoted boundary is one type; repeats that agree pass.
    let quoted = "--a,b\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\nx\r\n--a,b--\r\n";
    let ok = post(
        &proxy,
        "/posts",
        "multipart/form-data; boundary=\"a,b\"",
        quoted,
    );
    assert_eq!(crate::support::send(ok).await.status, 200);
    let json = "application/json; charset=utf-8";
    let mut twice = post(&proxy, "/posts", json, "{}");
    twice
        .headers_mut()
        .append("content-type", "application/json".parse().expect("value"));
    let listed = post(&proxy, "/posts", &format!("{json}, application/json"), "{}");
    for request in [twice, listed] {
        assert_eq!(crate::support::send(request).await.status, 200);
    }
    assert_eq!(bodies.lock().expect("lock").len(), 3);
    proxy.stop().await;
}

#[tokio::test]
async fn json_bodies_and_boundless_multipart_are_read_as_their_backends_read_them() {
    // Laravel reads a JSON body's top-level `_method` (any type holding `/json` or `+json`);
    // Rack parses a multipart type with no boundary as urlencoded; a typed form on a list path
    // must not reach the rate-limited DELETE on the same path either.
    let (upstream, bodies) = reading_backend().await;
    let proxy = Proxy::start(YAML, &upstream).await;
    let url = "application/x-www-form-urlencoded";
    let refused = [
        (
            "/export",
            "application/json",
            r#"{"a":[1],"_method":"GET"}"#,
        ),
        (
            "/export",
            "application/vnd.api+json",
            r#"{"\u005fmethod":"get"}"#,
        ),
        ("/export", "text/plain; x=/json", r#"{"_method":"HEAD"}"#),
        (
            "/feed",
            "application/json",
            r#"{"_method":"GET","limit":100000}"#,
        ),
        ("/export", "multipart/form-data", "_method=GET"),
        (
            "/feed",
            "multipart/form-data; boundary=",
            "_method=GET&limit=100000",
        ),
        ("/feed", url, "_method=DELETE"),
    ];
    for (path, kind, body) in refused {
        let got = crate::support::send(post(&proxy, path, kind, body)).await;
        let problem = got.problem(400);
        assert_eq!(
            problem["type"], "urn:pagegate:problem:ambiguous-method",
            "{path} {kind} {body}"
        );
    }
    assert!(
        bodies
            .lock()
            .expect("lock")
            .iter()
            .all(|(.., read)| read.is_none()),
        "no refused body completed on the backend"
    );
    // A form also marked JSON is read differently by Laravel and Rack: refused outright.
    let mixed = post(&proxy, "/export", &format!("{url}; x=+json"), "_method=GET");
    let problem = crate::support::send(mixed).await.problem(400);
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("the body's type is ambiguous")),
        "{problem}"
    );
    // Nested `_method`s, other keys, and a JSON body past 64 KiB on a list path pass whole.
    let big = format!(
        r#"{{"a":{{"_method":"GET"}},"b":"{}"}}"#,
        "z".repeat(200_000)
    );
    for (path, body) in [
        ("/export", r#"{"_method":"PUT"}"#.to_owned()),
        ("/feed", big),
    ] {
        let length = body.len();
        let got = crate::support::send(post(&proxy, path, "application/json", body)).await;
        assert_eq!(got.status, 200, "{path}: {}", got.text());
        let last = bodies.lock().expect("lock").last().cloned().expect("seen");
        assert_eq!(last.2, Some(length), "{path}: the body arrived whole");
    }
    proxy.stop().await;
}

#[tokio::test]
async fn a_compressed_body_read_for_method_gets_415_elsewhere_passes() {
    // Express's body-parser inflates a gzip form before `method-override` reads it; pagegate
    // cannot scan compressed bytes, so it asks for them uncompressed (RFC 7694).
    let (upstream, bodies) = reading_backend().await;
    let proxy = Proxy::start(YAML, &upstream).await;
    let gzip = |path: &str, coding: &str| {
        let mut request = post(&proxy, path, "application/x-www-form-urlencoded", "gz");
        request
            .headers_mut()
            .insert("content-encoding", coding.parse().expect("value"));
        request
    };
    for coding in ["gzip", "identity, br", "GZIP"] {
        let got = crate::support::send(gzip("/export", coding)).await;
        assert_eq!(
            got.problem(415)["type"],
            "urn:pagegate:problem:encoded-body",
            "{coding}"
        );
        assert_eq!(got.headers["accept-encoding"], "identity", "{coding}");
    }
    assert!(
        bodies.lock().expect("lock").is_empty(),
        "nothing reached it"
    );
    // Where no `_method` could move it, or uncoded, it passes.
    for (path, coding) in [("/posts", "gzip"), ("/export", "identity")] {
        let got = crate::support::send(gzip(path, coding)).await;
        assert_eq!(got.status, 200, "{path} {coding}");
    }
    proxy.stop().await;
}
