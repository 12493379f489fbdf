//! What a backend or a browser would read otherwise than pagegate: an untrusted client's
//! claims about where it came from, a `Host` that is no host name, dot segments that would
//! leave a base path, a redirect a tab turns into another origin, and a backend's answer
//! framed twice.

use crate::support::raw::{raw, raw_upstream};
use crate::support::{Proxy, Upstream, full, get, json_response, send};
use bytes::Bytes;

const PASS: &str = "
default: {action: pass, upstream: app}
upstreams: {app: {url: '{upstream}'}}
";

const CLAIMS: [(&str, &str); 9] = [
    ("x-real-ip", "6.6.6.6"),
    ("x-forwarded-ssl", "on"),
    ("x-forwarded-port", "443"),
    ("x-forwarded-prefix", "/evil"),
    ("true-client-ip", "6.6.6.6"),
    ("client-ip", "6.6.6.6"),
    // CGI-style servers (Puma before 6.4.3, WSGI, PHP-FPM) read `_` as `-`.
    ("x_forwarded_ssl", "on"),
    ("client_ip", "6.6.6.6"),
    ("x-forwarded-user", "admin"),
];

fn claiming(url: &str) -> http::Request<pagegate::Body> {
    let mut request = http::Request::get(url);
    for (name, value) in CLAIMS {
        request = request.header(name, value);
    }
    request.body(full(Bytes::new())).expect("request")
}

#[tokio::test]
async fn an_untrusted_clients_claims_of_origin_do_not_reach_the_backend() {
    let upstream = Upstream::json("{}").await;
    let proxy = Proxy::start(PASS, &upstream).await;
    assert_eq!(send(claiming(&proxy.url("/a"))).await.status, 200);
    let seen = upstream.last();
    for (name, _) in CLAIMS {
        assert!(
            !seen.headers.contains_key(name),
            "{name} reached the backend"
        );
    }
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    proxy.stop().await;

    // A header a limit keys by reaches the backend as counted, whatever its name.
    let keyed = format!(
        "{PASS}routes:\n  - {{name: all, path: '/{{*rest}}', upstream: app, limits: {{key: \
         header, key_header: X-Forwarded-User, rate: {{per_client: {{requests: 100, per: 1m}}}}}}}}\n"
    );
    let proxy = Proxy::start(&keyed, &upstream).await;
    assert_eq!(send(claiming(&proxy.url("/a"))).await.status, 200);
    let seen = upstream.last();
    assert_eq!(seen.headers["x-forwarded-user"], "admin");
    assert!(!seen.headers.contains_key("x-real-ip"));
    proxy.stop().await;

    // A trusted proxy in front set them: they are kept.
    let trusted = format!("trusted_proxies: [127.0.0.1]\n{PASS}");
    let proxy = Proxy::start(&trusted, &upstream).await;
    assert_eq!(send(claiming(&proxy.url("/a"))).await.status, 200);
    let seen = upstream.last();
    for (name, value) in CLAIMS {
        assert_eq!(seen.headers[name], value, "{name} from a trusted proxy");
    }
    proxy.stop().await;
}

#[tokio::test]
async fn a_host_that_is_no_host_name_is_a_400() {
    let upstream = Upstream::json("{}").await;
    let proxy = Proxy::start(PASS, &upstream).await;
    for head in [
        "Host: a;for=1.2.3.4;proto=https\r\n",
        "Host: user:pw@example.com\r\n",
        "Host: a.example\r\nHost: b.example\r\n",
    ] {
        let request = format!("GET /a HTTP/1.1\r\n{head}Connection: close\r\n\r\n");
        let answer = raw(proxy.addr, request.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{head:?}: {answer}");
        assert!(
            answer.contains("urn:pagegate:problem:invalid-host"),
            "{answer}"
        );
    }
    assert!(upstream.seen().is_empty(), "{:?}", upstream.seen());
    let answer = raw(
        proxy.addr,
        b"GET /a HTTP/1.1\r\nHost: api.example.com:8080\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = upstream.last();
    assert_eq!(seen.headers["x-forwarded-host"], "api.example.com:8080");
    proxy.stop().await;
}

#[tokio::test]
async fn dot_segments_cannot_leave_an_upstreams_base_path() {
    let upstream = Upstream::json("{}").await;
    let yaml = PASS.replace("'{upstream}'", "'{upstream}/public'");
    let proxy = Proxy::start(&yaml, &upstream).await;
    for path in [
        "/../admin",
        "/%2e%2e/admin",
        "/a/..%2fadmin",
        "/a\\..\\admin",
        "/./x",
    ] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        let answer = raw(proxy.addr, request.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
        assert!(answer.contains("invalid-path"), "{answer}");
    }
    assert!(upstream.seen().is_empty(), "{:?}", upstream.seen());
    assert_eq!(get(&proxy.url("/a.b/.well-known")).await.status, 200);
    assert_eq!(upstream.last().target, "/public/a.b/.well-known");
    proxy.stop().await;

    // Without a base path too: Express, Django and Starlette would match `/x/../a` as
    // `/x/{*rest}` (and `/orgs/./events` as `/orgs/{org}/events`), pagegate as `/a`.
    let proxy = Proxy::start(PASS, &upstream).await;
    let before = upstream.seen().len();
    for path in [
        "/x/../a",
        "/orgs/./events",
        "/orgs/.../events",
        "/orgs/%20/events",
        "/orgs/;x/events",
    ] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        let answer = raw(proxy.addr, request.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
        assert!(answer.contains("invalid-path"), "{answer}");
    }
    assert_eq!(upstream.seen().len(), before, "{:?}", upstream.seen());
    // What names one resource to every backend passes as written.
    for path in ["//a", "/a/", "/a;v=1", "/;jsessionid=1", "/a.b/.well-known"] {
        assert_eq!(get(&proxy.url(path)).await.status, 200, "{path}");
        assert_eq!(upstream.last().target, path);
    }
    proxy.stop().await;
}

#[tokio::test]
async fn a_percent_2f_that_picks_between_two_routes_is_refused() {
    let upstream = Upstream::json("[]").await;
    let yaml = "
upstreams: {app: {url: '{upstream}'}}
default: {action: pass, upstream: app}
routes:
  - {name: events, path: '/orgs/{org}/events', methods: [GET], upstream: app, list: {}}
  - name: org
    path: '/orgs/{org}'
    upstream: app
    limits: {rate: {per_client: {requests: 1, per: 1m}}}
";
    let proxy = Proxy::start(yaml, &upstream).await;
    // Express would serve it as `/orgs/{org}` (rate-limited), Django as the list route.
    let problem = get(&proxy.url("/orgs/x%2Fevents")).await.problem(400);
    assert_eq!(problem["type"], "urn:pagegate:problem:invalid-path");
    assert!(upstream.seen().is_empty(), "{:?}", upstream.seen());
    // Where one reading finds no route, the other serves it.
    assert_eq!(get(&proxy.url("/orgs/a%2Fb%2Fc")).await.status, 200);
    proxy.stop().await;
}

#[tokio::test]
async fn a_tab_cannot_turn_a_redirect_into_another_origin() {
    let upstream = Upstream::start(|req| async move {
        // Built from Host, as Go's `http.Redirect` with `"http://" + r.Host + next` is.
        let host = req.headers()["host"].to_str().expect("host").to_owned();
        let mut response = json_response("{}");
        *response.status_mut() = http::StatusCode::FOUND;
        let location = format!("http://{host}/\t/evil.example/x");
        response
            .headers_mut()
            .insert("location", location.parse().expect("location"));
        response
    })
    .await;
    let proxy = Proxy::start(PASS, &upstream).await;
    let got = get(&proxy.url("/login")).await;
    assert_eq!(got.status, 302);
    assert_eq!(got.header("location"), Some("/evil.example/x"));
    proxy.stop().await;
}

#[tokio::test]
async fn a_body_framed_twice_by_the_backend_reaches_the_client_whole() {
    let url = raw_upstream(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n\
          14\r\n01234567890123456789\r\n0\r\n\r\n",
    )
    .await;
    let proxy = Proxy::start_url(PASS, &url).await;
    let got = get(&proxy.url("/a")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.text(), "01234567890123456789");
    assert_eq!(got.header("content-length"), None);
    proxy.stop().await;
}

#[tokio::test]
async fn a_backends_trailers_reach_an_http1_client() {
    let url = raw_upstream(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n\
          5\r\nhello\r\n0\r\nx-checksum: abc\r\n\r\n",
    )
    .await;
    let proxy = Proxy::start_url(PASS, &url).await;
    let answer = raw(
        proxy.addr,
        b"GET /a HTTP/1.1\r\nHost: a\r\nTE: trailers\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let lower = answer.to_ascii_lowercase();
    assert!(lower.contains("\r\ntrailer: x-checksum\r\n"), "{answer}");
    assert!(lower.ends_with("0\r\nx-checksum: abc\r\n\r\n"), "{answer}");
    proxy.stop().await;
}
