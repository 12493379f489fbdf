//! Pagination policy on list routes, end to end: what the backend receives, and what clients
//! get back when they ask for too much or send values that must never reach the backend.

use crate::support::{Proxy, Upstream, get};

fn routes(on_violation: &str) -> String {
    format!(
        "
upstreams:
  app: {{url: '{{upstream}}'}}
routes:
  - name: events
    path: /events
    methods: [GET]
    upstream: app
    list:
      default_limit: 100
      max_limit: 1000
      max_offset: 10000
      on_violation: {on_violation}
  - name: pages
    path: /pages
    upstream: app
    list:
      limit_param: per_page
      page_param: page
      default_limit: 20
      max_limit: 50
      max_offset: 1000
      on_violation: {on_violation}
"
    )
}

#[tokio::test]
async fn a_request_without_a_limit_gets_the_default_injected() {
    let upstream = Upstream::json("[]").await;
    let proxy = Proxy::start(&routes("clamp"), &upstream).await;
    assert_eq!(get(&proxy.url("/events")).await.status, 200);
    assert_eq!(upstream.last().target, "/events?limit=100");
    assert_eq!(get(&proxy.url("/events?status=failed")).await.status, 200);
    assert_eq!(upstream.last().query(), "limit=100&status=failed");
    proxy.stop().await;
}

#[tokio::test]
async fn a_page_is_never_asked_for_as_a_range() {
    let upstream = Upstream::json("[]").await;
    let proxy = Proxy::start(&routes("clamp"), &upstream).await;
    let req = http::Request::get(proxy.url("/events"))
        .header("range", "bytes=100000-")
        .header("if-range", "\"v1\"")
        .header("request-range", "bytes=100000-")
        .header("request_range", "bytes=100000-")
        .header("accept", "application/json")
        .body(crate::support::full(""))
        .expect("request");
    assert_eq!(crate::support::send(req).await.status, 200);
    let seen = upstream.last();
    assert!(!seen.headers.contains_key("range"), "{:?}", seen.headers);
    assert!(!seen.headers.contains_key("if-range"));
    assert!(!seen.headers.contains_key("request-range"));
    assert!(!seen.headers.contains_key("request_range"));
    assert_eq!(seen.headers["accept"], "application/json");
    proxy.stop().await;
}

#[tokio::test]
async fn an_oversized_limit_is_clamped_and_the_client_told() {
    let upstream = Upstream::json("[]").await;
    let proxy = Proxy::start(&routes("clamp"), &upstream).await;
    let got = get(&proxy.url("/events?limit=100000000&offset=20")).await;
    assert_eq!(got.status, 200);
    assert_eq!(upstream.last().query(), "limit=1000&offset=20");
    assert_eq!(
        got.header("pagegate-clamped"),
        Some("limit=1000; requested=100000000")
    );
    let ok = get(&proxy.url("/events?limit=1000")).await;
    assert_eq!(
        ok.header("pagegate-clamped"),
        None,
        "a limit at the maximum is not clamped"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn max_items_below_max_limit_bounds_what_the_backend_is_asked_for() {
    let upstream = Upstream::json("[]").await;
    let yaml = routes("clamp").replace(
        "max_limit: 1000\n",
        "max_limit: 1000\n      max_items: 50\n",
    );
    let proxy = Proxy::start(&yaml, &upstream).await;
    let got = get(&proxy.url("/events?limit=100&offset=100")).await;
    assert_eq!(got.status, 200);
    assert_eq!(upstream.last().query(), "limit=50&offset=100");
    assert_eq!(
        got.header("pagegate-clamped"),
        Some("limit=50; requested=100")
    );
    assert_eq!(get(&proxy.url("/events")).await.status, 200);
    assert_eq!(upstream.last().query(), "limit=50", "the default, bounded");
    proxy.stop().await;
}

#[tokio::test]
async fn cookies_named_like_paging_parameters_never_reach_the_backend() {
    let upstream = Upstream::json("[]").await;
    let proxy = Proxy::start(&routes("clamp"), &upstream).await;
    // PHP's `$_REQUEST` and classic ASP.NET's `Request["offset"]` read a cookie as a
    // parameter: this one would skip `max_offset`.
    let headers = [("cookie", "session=s1; offset=99999999".to_owned())];
    let got = crate::support::get_with(&proxy, "/events", &headers).await;
    assert_eq!(got.status, 200);
    let seen = upstream.last();
    assert_eq!(seen.query(), "limit=100");
    assert_eq!(seen.headers["cookie"], "session=s1");
    let only = [("cookie", "Offset=5".to_owned())];
    crate::support::get_with(&proxy, "/events", &only).await;
    assert!(!upstream.last().headers.contains_key("cookie"));
    proxy.stop().await;
}

#[tokio::test]
async fn an_oversized_limit_is_rejected_with_a_problem_naming_it() {
    let upstream = Upstream::json("[]").await;
    let proxy = Proxy::start(&routes("reject"), &upstream).await;
    let problem = get(&proxy.url("/events?limit=5000")).await.problem(400);
    assert_eq!(problem["type"], "urn:pagegate:problem:limit-too-large");
    assert_eq!(problem["parameter"], "limit");
    assert_eq!(problem["value"], "5000");
    assert_eq!(problem["maximum"], 1000);
    assert!(problem["hint"].as_str().expect("hint").contains("cursor"));
    assert!(
        upstream.seen().is_empty(),
        "the rejected request reached the backend"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn deep_offsets_are_rejected_under_either_policy() {
    let upstream = Upstream::json("[]").await;
    for policy in ["clamp", "reject"] {
        let proxy = Proxy::start(&routes(policy), &upstream).await;
        let problem = get(&proxy.url("/events?offset=500000")).await.problem(400);
        assert_eq!(problem["type"], "urn:pagegate:problem:offset-too-deep");
        assert_eq!(problem["parameter"], "offset");
        assert_eq!(problem["value"], "500000");
        assert_eq!(problem["maximum"], 10000);
        // page=51 with per_page=20 starts 1000 rows deep: allowed; page=52 is 1020 deep.
        assert_eq!(get(&proxy.url("/pages?page=51")).await.status, 200);
        assert_eq!(upstream.last().query(), "per_page=20&page=51");
        let problem = get(&proxy.url("/pages?page=52")).await.problem(400);
        assert_eq!(problem["parameter"], "page");
        assert!(
            problem["detail"]
                .as_str()
                .expect("detail")
                .contains("1020 rows deep")
        );
        get(&proxy.url("/pages?page=0")).await.problem(400);
        proxy.stop().await;
    }
    assert_eq!(
        upstream.seen().len(),
        2,
        "only the two allowed pages reached the backend"
    );
}

#[tokio::test]
async fn bad_values_get_a_clear_400_and_never_reach_the_backend() {
    let upstream = Upstream::json("[]").await;
    let proxy = Proxy::start(&routes("clamp"), &upstream).await;
    let cases = [
        ("limit=-1", "not a whole number"),
        ("limit=abc", "not a whole number"),
        ("limit=", "empty"),
        ("limit", "empty"),
        ("limit=1e9", "not a whole number"),
        ("limit=99999999999999999999", "far beyond"),
        ("limit=%2B5", "not a whole number"),
        ("limit=+5", "not a whole number"),
        ("limit=%35", "not a whole number"),
        ("limit=5.0", "not a whole number"),
        ("limit=0", "at least one item"),
        ("limit=10&limit=20", "more than once"),
        ("offset=-5", "not a whole number"),
        ("offset=0x10", "not a whole number"),
        ("%6Cimit=5000", "exactly as `limit`"),
        ("LIMIT=5000", "exactly as `limit`"),
        ("Offset=99999", "exactly as `offset`"),
        ("lim%69t=1", "exactly as `limit`"),
        ("a=1;limit=999999", "exactly as `limit`"),
        ("x=1&y=2;Offset=99999", "exactly as `offset`"),
        ("limit[]=999999", "exactly as `limit`"),
        ("limit%5B0%5D=999999", "exactly as `limit`"),
        ("limit[max]=5", "exactly as `limit`"),
        // Spring binds `!limit` as limit's default; gorilla/schema folds `ſ` to `s`.
        ("%21limit=999999", "exactly as `limit`"),
        ("off%C5%BFet=99999", "exactly as `offset`"),
        // ASP.NET Core binds `paging.limit` to the `Limit` of a `[FromQuery] Paging paging`.
        ("paging.limit=999999", "exactly as `limit`"),
    ];
    for (query, reason) in cases {
        let got = get(&proxy.url(&format!("/events?{query}"))).await;
        let problem = got.problem(400);
        let detail = problem["detail"].as_str().expect("detail");
        assert!(detail.contains(reason), "{query}: {detail}");
        assert_eq!(
            problem["type"], "urn:pagegate:problem:invalid-pagination-parameter",
            "{query}"
        );
        assert!(problem["parameter"].is_string(), "{query}");
    }
    assert!(
        upstream.seen().is_empty(),
        "a bad request reached the backend: {:?}",
        upstream.seen()
    );
    proxy.stop().await;
}

#[tokio::test]
async fn other_parameters_are_forwarded_byte_for_byte_in_order() {
    // pagegate's own parameters lead (so no parser's parameter cap can drop them); every
    // other piece follows unchanged, in the client's order.
    let upstream = Upstream::json("[]").await;
    let proxy = Proxy::start(&routes("clamp"), &upstream).await;
    let query = "z=1&status=a%20b&limit=007&tag=x&tag=y&empty=&flag&q=caf%C3%A9+bar&sort=-created_at&offset=30&%E2%9C%93=1";
    assert_eq!(
        get(&proxy.url(&format!("/events?{query}"))).await.status,
        200
    );
    assert_eq!(
        upstream.last().query(),
        "limit=7&offset=30&z=1&status=a%20b&tag=x&tag=y&empty=&flag&q=caf%C3%A9+bar&sort=-created_at&%E2%9C%93=1"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn other_methods_are_checked_as_reads_but_sent_unchanged() {
    let upstream = Upstream::json("[]").await;
    let yaml = format!(
        "{}\ndefault: {{action: pass, upstream: app}}\n",
        routes("clamp")
    );
    let proxy = Proxy::start(&yaml, &upstream).await;
    let post = |query: &str| {
        let request = http::Request::post(proxy.url(&format!("/pages{query}")))
            .header("cookie", "page=9999; theme=dark")
            .body(crate::support::full("{}"))
            .expect("request");
        crate::support::send(request)
    };
    // `/pages` serves every method: a backend that runs its list handler for a POST would
    // read these as a GET's, so they are refused as a GET's would be, clamps included.
    for query in ["?per_page=5000", "?page=100", "?PER_PAGE=5"] {
        let got = post(query).await;
        assert_eq!(got.status, 400, "{query}: {}", got.text());
    }
    assert!(upstream.seen().is_empty(), "{:?}", upstream.seen());
    // Within the policy: sent as it came, nothing injected, paging cookies dropped.
    assert_eq!(post("?per_page=5&page=2").await.status, 200);
    assert_eq!(upstream.last().query(), "per_page=5&page=2");
    assert_eq!(post("").await.status, 200);
    let seen = upstream.last();
    assert_eq!(seen.target, "/pages", "no limit injected into a POST");
    assert_eq!(seen.headers["cookie"], "theme=dark");
    // A CORS preflight announces a GET that will be clamped: it passes; a bare OPTIONS with
    // the same query is checked as a POST is.
    let options = |preflight: bool| {
        let mut request = http::Request::options(proxy.url("/pages?per_page=5000"));
        if preflight {
            request = request
                .header("origin", "https://app.example")
                .header("access-control-request-method", "GET");
        }
        crate::support::send(request.body(crate::support::full("")).expect("request"))
    };
    assert_eq!(options(true).await.status, 200);
    assert_eq!(upstream.last().query(), "per_page=5000");
    assert_eq!(options(false).await.status, 400);
    assert_eq!(get(&proxy.url("/other?limit=5000")).await.status, 200);
    assert_eq!(
        upstream.last().query(),
        "limit=5000",
        "no list policy on unmatched paths"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn php_style_names_are_folded_before_comparing() {
    let upstream = Upstream::json("[]").await;
    let proxy = Proxy::start(&routes("clamp"), &upstream).await;
    for query in [
        "per.page=999",
        "per%20page=999",
        "PER_PAGE=999",
        "per_page[]=999",
    ] {
        let problem = get(&proxy.url(&format!("/pages?{query}")))
            .await
            .problem(400);
        assert_eq!(problem["parameter"], "per_page", "{query}");
    }
    assert!(upstream.seen().is_empty());
    proxy.stop().await;
}

#[tokio::test]
async fn path_variants_cannot_dodge_a_list_route() {
    let upstream = Upstream::json("[]").await;
    let yaml = format!(
        "{}\ndefault: {{action: pass, upstream: app}}\n",
        routes("reject")
    );
    let proxy = Proxy::start(&yaml, &upstream).await;
    for path in ["/events/", "/Events", "//events", "/events;v=1"] {
        let problem = get(&proxy.url(&format!("{path}?limit=5000")))
            .await
            .problem(400);
        assert_eq!(
            problem["type"], "urn:pagegate:problem:limit-too-large",
            "{path}"
        );
    }
    assert!(upstream.seen().is_empty(), "{:?}", upstream.seen());
    proxy.stop().await;
}

#[tokio::test]
async fn report_only_forwards_everything_unchanged_and_says_what_would_have_happened() {
    // The backend ignores `limit` and always sends 30 items.
    let upstream = Upstream::start(|_| async {
        http::Response::new(crate::support::bodies::json_items(1, 30, 10))
    })
    .await;
    let yaml = "
admin: {listen: 127.0.0.1:0}
default: {action: deny}
upstreams: {app: {url: '{upstream}'}}
routes:
  - {name: events, path: /events, methods: [GET], upstream: app, list: {report_only: true, default_limit: 10, max_limit: 20, max_offset: 100}}
";
    let proxy = Proxy::start(yaml, &upstream).await;
    // An oversized limit: forwarded as written; the answer says what pagegate would send.
    let got = get(&proxy.url("/events?limit=500&q=x")).await;
    assert_eq!(got.status, 200);
    assert_eq!(upstream.last().target, "/events?limit=500&q=x");
    assert_eq!(got.header("pagegate-would-rewrite"), Some("limit=20&q=x"));
    assert_eq!(got.json().as_array().map(Vec::len), Some(30), "nothing cut");
    // A deep offset: forwarded; it would have been refused.
    let got = get(&proxy.url("/events?offset=5000")).await;
    assert_eq!(got.status, 200);
    assert_eq!(upstream.last().target, "/events?offset=5000");
    assert_eq!(
        got.header("pagegate-would-refuse"),
        Some("400 offset-too-deep")
    );
    // No limit at all: the default would have been injected.
    let got = get(&proxy.url("/events")).await;
    assert_eq!(upstream.last().target, "/events");
    assert_eq!(got.header("pagegate-would-rewrite"), Some("limit=10"));
    // A page within the policy is not reported.
    let got = get(&proxy.url("/events?limit=20&offset=0")).await;
    assert_eq!(
        got.header("pagegate-would-rewrite"),
        None,
        "{:?}",
        got.headers
    );
    assert_eq!(got.header("pagegate-would-refuse"), None);
    crate::support::assert_metrics(
        &proxy.metrics_text().await,
        &[
            "pagegate_reported_total{route=\"events\",what=\"clamped\"} 1",
            "pagegate_reported_total{route=\"events\",what=\"refused\"} 1",
            "pagegate_reported_total{route=\"events\",what=\"rewritten\"} 1",
            // Every answer had 30 items, more than any page: the guard would have cut all four.
            "pagegate_reported_total{route=\"events\",what=\"cut_items\"} 4",
        ],
    );
    proxy.stop().await;
}
