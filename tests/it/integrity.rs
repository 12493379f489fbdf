//! Requests a backend could read differently from pagegate, and backend answers that must not
//! reach a client as clean responses: method spellings, overrides and bodies on list paths,
//! CONNECT, an unasked `101`, and a list document the backend never finished.

use crate::support::raw::{raw, raw_upstream};
use crate::support::{Proxy, Upstream, full, get, json_response, send};
use bytes::Bytes;

const YAML: &str = "
default: {action: pass, upstream: app}
upstreams: {app: {url: '{upstream}'}}
routes:
  - {name: events, path: /events, methods: [GET], upstream: app, list: {}}
  - {name: create, path: /events, methods: [POST], upstream: app}
";

fn request(
    method: &str,
    url: &str,
    body: impl Into<Bytes>,
    headers: &[(&str, &str)],
) -> http::Request<pagegate::Body> {
    let mut builder = http::Request::builder()
        .method(http::Method::from_bytes(method.as_bytes()).expect("method"))
        .uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(full(body)).expect("request")
}

#[tokio::test]
async fn list_paths_refuse_methods_a_backend_could_read_as_a_list_read() {
    let upstream = Upstream::start(|_| async { json_response("[]") }).await;
    let proxy = Proxy::start(YAML, &upstream).await;
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let cases = [
        ("get", "/events", "", &[][..]),
        ("Get", "/Events/", "", &[][..]),
        ("head", "/events", "", &[][..]),
        ("POST", "/events?_method=GET&limit=99999", "", &[][..]),
        ("POST", "/events?_METHOD=head", "", &[][..]),
        // Rack 2 splits the query at `;` too.
        ("POST", "/events?a=1;_method=GET", "", &[][..]),
        ("GET", "/events", "limit=99999", &form[..]),
    ];
    for (method, path, body, headers) in cases {
        let got = send(request(method, &proxy.url(path), body, headers)).await;
        let problem = got.problem(400);
        assert_eq!(
            problem["type"], "urn:pagegate:problem:ambiguous-method",
            "{method} {path}: {problem}"
        );
    }
    assert!(upstream.seen().is_empty(), "{:?}", upstream.seen());

    // What is not ambiguous still passes: a POST to the list path, an override naming the
    // request's own method, and lower-case methods on paths no route serves.
    for (method, path) in [
        ("POST", "/events"),
        ("POST", "/events?_method=post"),
        ("get", "/other"),
    ] {
        let got = send(request(method, &proxy.url(path), "{}", &[])).await;
        assert_eq!(got.status, 200, "{method} {path}: {}", got.text());
    }
    assert_eq!(upstream.seen().len(), 3);
    proxy.stop().await;
}

#[tokio::test]
async fn connect_is_refused_with_405() {
    let upstream = Upstream::start(|_| async { json_response("{}") }).await;
    let proxy = Proxy::start(YAML, &upstream).await;
    let answer = raw(
        proxy.addr,
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("\r\nallow: get, head"),
        "{answer}"
    );
    assert!(
        answer.contains("urn:pagegate:problem:method-not-allowed"),
        "{answer}"
    );
    assert!(upstream.seen().is_empty());
    proxy.stop().await;
}

#[tokio::test]
async fn an_unasked_101_is_a_502() {
    let url = raw_upstream(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nraw bytes",
    )
    .await;
    let proxy = Proxy::start_url(YAML, &url).await;
    for path in ["/events", "/other"] {
        let got = crate::support::get(&proxy.url(path)).await;
        let problem = got.problem(502);
        assert_eq!(
            problem["type"], "urn:pagegate:problem:upstream-unavailable",
            "{path}"
        );
    }
    proxy.stop().await;
}

#[tokio::test]
async fn an_unfinished_list_document_is_never_a_clean_200() {
    // No length, no chunking: the body ends when the backend closes, mid-array.
    let url = raw_upstream(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n[{\"id\":1},{\"id\":2},{\"id\":3},",
    )
    .await;
    for on_invalid in ["pass", "reject"] {
        let yaml = YAML.replace("list: {}", &format!("list: {{on_invalid: {on_invalid}}}"));
        let proxy = Proxy::start_url(&yaml, &url).await;
        let got = crate::support::get(&proxy.url("/events")).await;
        let problem = got.problem(502);
        assert_eq!(
            problem["detail"], "the backend's list response ended before its JSON document did",
            "on_invalid: {on_invalid}"
        );
        proxy.stop().await;
    }
    // A body that is not JSON at all still passes under `on_invalid: pass`.
    let html = raw_upstream(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n<html>ok</html>",
    )
    .await;
    let yaml = YAML.replace("list: {}", "list: {on_invalid: pass}");
    let proxy = Proxy::start_url(&yaml, &html).await;
    let got = crate::support::get(&proxy.url("/events")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, Bytes::from_static(b"<html>ok</html>"));
    proxy.stop().await;
}

#[tokio::test]
async fn a_backend_redirect_to_itself_is_rewritten_to_a_path_on_pagegate() {
    // FastAPI's trailing-slash redirect names the backend's own address.
    let upstream = Upstream::start(|req| async move {
        let addr = req.headers()["host"].to_str().expect("host").to_owned();
        let mut response = json_response("");
        *response.status_mut() = http::StatusCode::TEMPORARY_REDIRECT;
        let location = format!("http://{addr}/events/?limit=5");
        response
            .headers_mut()
            .insert("location", location.parse().expect("value"));
        response
    })
    .await;
    let proxy = Proxy::start(YAML, &upstream).await;
    let got = crate::support::get(&proxy.url("/other")).await;
    assert_eq!(got.status, 307);
    assert_eq!(got.header("location"), Some("/events/?limit=5"));
    proxy.stop().await;

    let kept = YAML.replace(
        "app: {url: '{upstream}'}",
        "app: {url: '{upstream}', rewrite_redirects: false}",
    );
    let proxy = Proxy::start(&kept, &upstream).await;
    let got = crate::support::get(&proxy.url("/other")).await;
    assert_eq!(
        got.header("location"),
        Some(format!("http://{}/events/?limit=5", upstream.addr).as_str())
    );
    proxy.stop().await;
}

#[tokio::test]
#[expect(
    clippy::too_many_lines,
    reason = "one table of framework spellings, each sent through one started proxy"
)]
async fn form_bodies_on_list_paths_cannot_override_the_method() {
    use http_body_util::BodyExt;
    // Records each body it receives.
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Bytes>::new()));
    let recorded = std::sync::Arc::clone(&bodies);
    let upstream = Upstream::start(move |req| {
        let recorded = std::sync::Arc::clone(&recorded);
        async move {
            let body = req.into_body().collect().await.expect("body").to_bytes();
            recorded.lock().expect("lock").push(body);
            json_response("{}")
        }
    })
    .await;
    let proxy = Proxy::start(YAML, &upstream).await;
    let form = ("content-type", "application/x-www-form-urlencoded");
    let multipart = ("content-type", "multipart/form-data; boundary=XyZ");
    let get = "_method=GET&limit=99999";
    // Types a backend reads as a form: Rack parses an untyped POST body as one and cuts the
    // type at `,`; PHP cuts it at a space.
    let lax: [&[(&str, &str)]; 5] = [
        &[],
        &[("content-type", "")],
        &[(
            "content-type",
            "application/x-www-form-urlencoded,text/plain",
        )],
        &[(
            "content-type",
            "Application/X-WWW-Form-Urlencoded charset=x",
        )],
        &[("content-type", "text/plain"), form],
    ];
    for headers in lax {
        let got = send(request("POST", &proxy.url("/events"), get, headers)).await;
        let problem = got.problem(400);
        assert_eq!(
            problem["type"], "urn:pagegate:problem:ambiguous-method",
            "{headers:?}"
        );
    }
    let refused = [
        (get.to_owned(), form, "ambiguous-method"),
        ("a=1&_METHOD=head".to_owned(), form, "ambiguous-method"),
        (
            "--XyZ\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nGET\r\n--XyZ--\r\n"
                .to_owned(),
            multipart,
            "ambiguous-method",
        ),
        // PHP (Laravel, Symfony) folds `.method` into `_method`.
        (
            "--XyZ\r\nContent-Disposition: form-data;name=\".method\"\r\n\r\nhead\r\n--XyZ--\r\n"
                .to_owned(),
            multipart,
            "ambiguous-method",
        ),
        (
            format!("a={}", "x".repeat(70 * 1024)),
            form,
            "form-too-large",
        ),
    ];
    for (body, content_type, kind) in refused {
        let got = send(request(
            "POST",
            &proxy.url("/events"),
            body,
            &[content_type],
        ))
        .await;
        let status = if kind == "form-too-large" { 413 } else { 400 };
        let problem = got.problem(status);
        assert_eq!(
            problem["type"],
            format!("urn:pagegate:problem:{kind}"),
            "{problem}"
        );
    }
    assert!(
        bodies.lock().expect("lock").is_empty(),
        "nothing reached the backend"
    );

    // A form that overrides nothing is forwarded as read; other paths and bodies are untouched.
    let got = send(request(
        "POST",
        &proxy.url("/events"),
        "name=a&_method=POST",
        &[form],
    ))
    .await;
    assert_eq!(got.status, 200);
    // A file that happens to be called `_method` names no field.
    let upload = "--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"_method\"\r\n\r\nGET\r\n--XyZ--\r\n";
    let got = send(request("POST", &proxy.url("/events"), upload, &[multipart])).await;
    assert_eq!(got.status, 200, "{}", got.text());
    let got = send(request(
        "POST",
        &proxy.url("/other"),
        "_method=GET",
        &[form],
    ))
    .await;
    assert_eq!(got.status, 200, "not a list path");
    assert_eq!(
        *bodies.lock().expect("lock"),
        [
            Bytes::from_static(b"name=a&_method=POST"),
            Bytes::from(upload),
            Bytes::from_static(b"_method=GET")
        ]
    );
    // An untyped POST body is scanned, not read whole: past the form cap it still passes.
    let untyped = format!("{{\"data\": \"{}\"}}", "z".repeat(200 * 1024));
    let got = send(request("POST", &proxy.url("/events"), untyped.clone(), &[])).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(
        bodies.lock().expect("lock").last(),
        Some(&Bytes::from(untyped))
    );
    proxy.stop().await;
}

/// How frameworks read each spelling of a request to `GET /report`, whose route allows GET
/// only and limits it; with `default: pass`, a spelling that missed the route would reach the
/// backend past its limits.
const SPELLINGS: &[(&str, &str, &str, &str)] = &[
    // (method, target, form body, who runs it as the GET)
    (
        "get",
        "/report",
        "",
        "Werkzeug (Flask, Bottle) and Django upper-case the method",
    ),
    ("Get", "/report", "", "the same"),
    (
        "POST",
        "/report?_method=GET",
        "",
        "Express method-override, Rack, Laravel, Symfony",
    ),
    ("POST", "/report?_method=get", "", "the same, case-folded"),
    (
        "POST",
        "/report?%5Fmethod=GET",
        "",
        "the same, percent-encoded",
    ),
    (
        "PUT",
        "/report?_method=GET",
        "",
        "an override from any method that reaches another route",
    ),
    (
        "GET",
        "/report",
        "limit=9",
        "Rack merges a GET body's form into the parameters",
    ),
];

#[tokio::test]
async fn every_spelling_of_a_method_meets_the_routes_limits_or_is_refused() {
    let upstream = Upstream::start(|_| async { json_response("{}") }).await;
    let yaml = "
default: {action: pass, upstream: app}
upstreams: {app: {url: '{upstream}'}}
routes:
  - name: report
    path: /report
    methods: [GET]
    upstream: app
    limits: {rate: {per_client: {requests: 5, per: 1m}}}
  - {name: search, path: /search, methods: [GET], upstream: app, allow_read_body: true}
";
    let proxy = Proxy::start(yaml, &upstream).await;
    let form = [("content-type", "application/x-www-form-urlencoded")];
    for (method, target, body, who) in SPELLINGS {
        let headers = if body.is_empty() { &[][..] } else { &form[..] };
        let got = send(request(method, &proxy.url(target), *body, headers)).await;
        assert_eq!(
            got.problem(400)["type"],
            "urn:pagegate:problem:ambiguous-method",
            "{method} {target} {body:?} ({who})"
        );
    }
    assert!(upstream.seen().is_empty(), "{:?}", upstream.seen());
    // The GET itself meets the route's limit: five, then 429.
    let statuses: Vec<u16> = futures_util::future::join_all(
        (0..7).map(|_| send(request("GET", &proxy.url("/report"), "", &[]))),
    )
    .await
    .iter()
    .map(|g| g.status.as_u16())
    .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        2,
        "{statuses:?}"
    );
    // A route that takes a body on GET (a search API) gets it.
    let got = send(request(
        "GET",
        &proxy.url("/search"),
        "{\"query\":{}}",
        &[("content-type", "application/json")],
    ))
    .await;
    assert_eq!(got.status, 200, "{}", got.text());
    // An override that reaches the same route as the request's own method passes: a Rails or
    // Laravel form's `_method=patch` (here both reach the default route).
    let got = send(request(
        "POST",
        &proxy.url("/report?_method=PATCH"),
        "",
        &[],
    ))
    .await;
    assert_eq!(got.status, 200, "{}", got.text());
    // A GET body is refused on the default route too, which does not allow it.
    let got = send(request("GET", &proxy.url("/elsewhere"), "x=1", &form)).await;
    assert_eq!(
        got.problem(400)["type"],
        "urn:pagegate:problem:ambiguous-method"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn path_variants_a_backend_reads_as_a_route_meet_that_route() {
    let upstream = Upstream::start(|_| async { json_response("[]") }).await;
    let proxy = Proxy::start(YAML, &upstream).await;
    // IIS and Windows drop a segment's trailing dots and spaces; `;` starts path parameters.
    for path in [
        "/events.",
        "/events%2e",
        "/events%20",
        "/events%3B",
        "/events%3bx=1",
        "/events;x",
    ] {
        let got = send(request("GET", &proxy.url(path), "", &[])).await;
        assert_eq!(got.status, 200, "{path}: {}", got.text());
        // The list route's policy ran: the backend got the page size pagegate put in.
        let seen = upstream.last();
        assert!(
            seen.query().contains("limit=100"),
            "{path}: {}",
            seen.target
        );
    }
    // A NUL byte names no resource: refused, never passed on.
    let before = upstream.seen().len();
    for path in ["/events%00", "/other%00.json"] {
        let got = send(request("GET", &proxy.url(path), "", &[])).await;
        assert_eq!(
            got.problem(400)["type"],
            "urn:pagegate:problem:invalid-path",
            "{path}"
        );
    }
    assert_eq!(upstream.seen().len(), before);
    proxy.stop().await;
}

#[tokio::test]
async fn a_chunked_read_body_reaches_the_backend_whole() {
    // hyper's client sends an unknown-length GET or HEAD body as no body at all unless the
    // request says `Transfer-Encoding: chunked`, which pagegate drops as hop-by-hop.
    use http_body_util::BodyExt;
    let upstream = Upstream::start(|req: http::Request<hyper::body::Incoming>| async move {
        let chunked = req.headers().contains_key("transfer-encoding");
        let read = req.into_body().collect().await.expect("body").to_bytes();
        json_response(format!(
            "{{\"read\": {}, \"chunked\": {chunked}}}",
            read.len()
        ))
    })
    .await;
    let yaml = "
default: {action: deny}
upstreams: {app: {url: '{upstream}'}}
routes:
  - {name: search, path: /search, methods: [GET], upstream: app, allow_read_body: true}
  - {name: plain, path: /plain, methods: [GET], upstream: app}
";
    let proxy = Proxy::start(yaml, &upstream).await;
    // HTTP/2 needs no length: the body streams where allowed, and is not sent elsewhere.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build(hyper_util::client::legacy::connect::HttpConnector::new());
    for (path, expected) in [
        (
            "/search",
            serde_json::json!({"read": 100_000, "chunked": true}),
        ),
        ("/plain", serde_json::json!({"read": 0, "chunked": false})),
    ] {
        let req = http::Request::get(proxy.url(path))
            .body(crate::support::bodies::pattern(100_000, 8192))
            .expect("request");
        let response = client.request(req).await.expect("h2c response");
        assert_eq!(response.status(), 200, "{path}");
        let body = response.into_body().collect().await.expect("body");
        let got: serde_json::Value = serde_json::from_slice(&body.to_bytes()).expect("json");
        assert_eq!(got, expected, "{path}");
    }
    let req = http::Request::get(proxy.url("/search"))
        .header("transfer-encoding", "chunked")
        .body(crate::support::bodies::pattern(100_000, 8192))
        .expect("request");
    let got = send(req).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(
        got.json(),
        serde_json::json!({"read": 100_000, "chunked": true})
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_catch_all_or_a_parameter_cannot_take_a_path_variant_from_a_limit() {
    let upstream = Upstream::start(|_| async { json_response("{}") }).await;
    let yaml = "
upstreams: {app: {url: '{upstream}'}}
routes:
  - name: login
    path: /login
    methods: [POST]
    upstream: app
    limits: {rate: {per_client: {requests: 1, per: 1m}}}
  - {name: files, path: '/{*rest}', upstream: app}
";
    let proxy = Proxy::start(yaml, &upstream).await;
    // Rails reads `/login.json` as `/login`; many routers read `%2F` as `/`.
    let statuses: Vec<u16> = futures_util::future::join_all(
        ["/login", "/login.json", "/login%2F", "/Login"]
            .map(|path| send(request("POST", &proxy.url(path), "", &[]))),
    )
    .await
    .iter()
    .map(|got| got.status.as_u16())
    .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        3,
        "one request within the limit, whatever the spelling: {statuses:?}"
    );
    assert_eq!(upstream.seen().len(), 1);
    proxy.stop().await;
    // Nor can a route that takes a parameter (`/{slug}` matches `/login.json` as written).
    let slug = yaml.replace("'/{*rest}'", "'/{slug}'");
    let proxy = Proxy::start(&slug, &upstream).await;
    for path in ["/login", "/login.json"] {
        let got = send(request("POST", &proxy.url(path), "", &[])).await;
        assert_eq!(
            got.status,
            if path == "/login" { 200 } else { 429 },
            "{path}"
        );
    }
    assert_eq!(upstream.seen().len(), 2);
    proxy.stop().await;
}

#[tokio::test]
async fn a_backend_without_format_suffixes_keeps_a_catch_alls_limit_on_extensions() {
    let upstream = Upstream::start(|_| async { json_response("{}") }).await;
    let yaml = "
upstreams: {app: {url: '{upstream}', format_suffixes: false}}
routes:
  - {name: health, path: /health, upstream: app}
  - name: files
    path: '/{*rest}'
    upstream: app
    limits: {rate: {per_client: {requests: 1, per: 1m}}}
";
    // Express serves `/health.x` as a path of its own, which the limited catch-all serves.
    let proxy = Proxy::start(yaml, &upstream).await;
    let mut statuses = Vec::new();
    for path in [
        "/health",
        "/health.x",
        "/health",
        "/health.x",
        "/health.json",
    ] {
        statuses.push(get(&proxy.url(path)).await.status.as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    proxy.stop().await;
    // By default the backend reads `/health.x` as `/health` (Rails), so the route does.
    let suffixes = yaml.replace(", format_suffixes: false", "");
    let proxy = Proxy::start(&suffixes, &upstream).await;
    for path in ["/health.x", "/health.x", "/health.json"] {
        assert_eq!(get(&proxy.url(path)).await.status, 200, "{path}");
    }
    proxy.stop().await;
}
