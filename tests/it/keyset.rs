//! Keyset routes end to end: a legacy backend that only understands `id_gt`/`limit` becomes a
//! cursor-paged API. Pages are walked through `Link` headers; cursors are attacked.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::support::{Got, Proxy, Upstream, get};
use serde_json::{Value, json};

const SECRET: &str = "0123456789abcdef0123456789abcdef-test";

/// A legacy list backend: filters by `id_gt` (and `created_after` for compound keys, as the
/// tuple `(created_at, id) > (created_after, id_gt)`), sorts by key, honours `limit`, and
/// wraps the list in `{"data": [...], "meta": {...}}` when `envelope` is set.
async fn backend(items: Arc<Vec<Value>>, envelope: bool) -> Upstream {
    Upstream::start(move |req: http::Request<hyper::body::Incoming>| {
        let items = Arc::clone(&items);
        async move {
            let q: HashMap<String, String> =
                form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                    .into_owned()
                    .collect();
            let limit: usize = q
                .get("limit")
                .and_then(|l| l.parse().ok())
                .unwrap_or(usize::MAX);
            let after_id: Option<i64> = q.get("id_gt").and_then(|v| v.parse().ok());
            let after_at = q.get("created_after").cloned();
            let page: Vec<&Value> = items
                .iter()
                .filter(|item| {
                    let id = item["id"].as_i64().expect("id");
                    match (&after_at, after_id) {
                        (Some(at), Some(after)) => {
                            let created = item["created_at"].as_str().expect("created_at");
                            (created, id) > (at.as_str(), after)
                        }
                        (None, Some(after)) => id > after,
                        _ => true,
                    }
                })
                .take(limit)
                .collect();
            let body = if envelope {
                json!({"data": page, "meta": {"backend": "legacy"}})
            } else {
                json!(page)
            };
            crate::support::json_response(body.to_string())
        }
    })
    .await
}

fn config(extra_keyset: &str, list_extra: &str) -> String {
    format!(
        "
upstreams: {{app: {{url: '{{upstream}}'}}}}
cursors: {{keys: [{{id: 1, secret: {SECRET}}}]}}
routes:
  - name: events
    path: /events
    methods: [GET]
    upstream: app
    list:
      default_limit: 100
      max_limit: 1000
      max_offset: 10000
      {list_extra}
      keyset:
        {extra_keyset}
"
    )
}

fn next_link(got: &Got) -> Option<String> {
    let link = got.header("link")?;
    let url = link.strip_prefix('<')?.split_once(">; rel=\"next\"")?.0;
    Some(url.to_owned())
}

/// Follows `Link: rel="next"` from `start`; returns every item seen and the number of pages.
async fn walk(proxy: &Proxy, start: &str, items_at: &str) -> (Vec<Value>, usize) {
    let mut url = start.to_owned();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let got = get(&proxy.url(&url)).await;
        assert_eq!(got.status, 200, "{url}: {}", got.text());
        let body = got.json();
        let page = body
            .pointer(items_at)
            .and_then(Value::as_array)
            .expect("a list")
            .clone();
        assert!(!page.is_empty(), "page {pages} ({url}) is empty");
        pages += 1;
        seen.extend(page);
        match next_link(&got) {
            Some(next) => url = next,
            None => return (seen, pages),
        }
    }
}

#[tokio::test]
async fn walking_100000_items_by_cursor_visits_each_once_in_order() {
    // Ids with gaps: the cursor carries keys, not positions.
    let items: Vec<Value> = (1..=100_000i64)
        .map(|i| json!({"id": i * 3, "n": i}))
        .collect();
    let upstream = backend(Arc::new(items), false).await;
    let proxy = Proxy::start(&config("keys: [{field: /id, param: id_gt}]", ""), &upstream).await;
    let (seen, pages) = walk(&proxy, "/events?limit=1000", "").await;
    assert_eq!(pages, 100, "exactly 100 full pages and no empty 101st");
    let ids: Vec<i64> = seen.iter().map(|v| v["id"].as_i64().expect("id")).collect();
    let expected: Vec<i64> = (1..=100_000i64).map(|i| i * 3).collect();
    assert_eq!(ids, expected);
    // The backend was asked for one item more than each page, by key.
    let last = upstream.last();
    assert_eq!(last.query(), "limit=1001&id_gt=297000");
    proxy.stop().await;
}

#[tokio::test]
async fn compound_keys_with_ties_on_the_first_column_lose_nothing() {
    // Seven items share each timestamp, so page boundaries fall inside runs of ties.
    let items: Vec<Value> = (1..=500i64)
        .map(|i| json!({"id": i, "created_at": format!("2026-01-01T00:{:02}:{:02}Z", i / 7 / 60, i / 7 % 60)}))
        .collect();
    let mut sorted = items.clone();
    sorted.sort_by(|a, b| {
        (a["created_at"].as_str(), a["id"].as_i64())
            .cmp(&(b["created_at"].as_str(), b["id"].as_i64()))
    });
    let upstream = backend(Arc::new(sorted.clone()), false).await;
    let keys = "keys: [{field: /created_at, param: created_after}, {field: /id, param: id_gt}]";
    let proxy = Proxy::start(&config(keys, ""), &upstream).await;
    let (seen, pages) = walk(&proxy, "/events?limit=10", "").await;
    assert_eq!(pages, 50);
    assert_eq!(seen, sorted);
    assert!(
        upstream
            .last()
            .query()
            .contains("created_after=2026-01-01T00%3A01%3A10Z&id_gt=490")
    );
    proxy.stop().await;
}

#[tokio::test]
async fn envelopes_keep_their_shape_and_carry_the_next_cursor() {
    let items: Vec<Value> = (1..=25i64).map(|i| json!({"id": i})).collect();
    let upstream = backend(Arc::new(items), true).await;
    let yaml = config(
        "keys: [{field: /id, param: id_gt}]\n        next_cursor_field: next_cursor",
        "items: /data",
    );
    let proxy = Proxy::start(&yaml, &upstream).await;
    let first = get(&proxy.url("/events?limit=10")).await;
    let body = first.json();
    assert_eq!(body["data"].as_array().expect("data").len(), 10);
    assert_eq!(
        body["meta"],
        json!({"backend": "legacy"}),
        "the rest of the envelope is kept"
    );
    let cursor = body["next_cursor"]
        .as_str()
        .expect("next cursor in the envelope");
    assert!(
        next_link(&first)
            .expect("link")
            .ends_with(&format!("cursor={cursor}"))
    );
    assert_eq!(
        first.header("content-length"),
        Some(first.body.len().to_string().as_str())
    );
    let (seen, pages) = walk(&proxy, "/events?limit=10", "/data").await;
    assert_eq!((seen.len(), pages), (25, 3));
    let last =
        get(&proxy
            .url(&next_link(&get(&proxy.url(&next_link(&first).expect("2"))).await).expect("3")))
        .await;
    assert_eq!(
        last.json()["next_cursor"],
        Value::Null,
        "the last page says there is no next one"
    );
    assert!(next_link(&last).is_none());
    proxy.stop().await;
}

#[tokio::test]
async fn an_unbounded_request_becomes_the_first_keyset_page() {
    let items: Vec<Value> = (1..=1000i64).map(|i| json!({"id": i})).collect();
    let upstream = backend(Arc::new(items), false).await;
    let proxy = Proxy::start(&config("keys: [{field: /id, param: id_gt}]", ""), &upstream).await;
    let got = get(&proxy.url("/events")).await;
    assert_eq!(got.json().as_array().expect("list").len(), 100);
    assert_eq!(upstream.last().query(), "limit=101");
    assert!(
        next_link(&got)
            .expect("next")
            .starts_with("/events?cursor=")
    );
    assert_eq!(
        got.header("pagegate-truncated"),
        None,
        "asking for one more is not a truncation"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_deep_offset_is_refused_with_a_link_to_the_keyset_form() {
    let upstream = backend(Arc::new(Vec::new()), false).await;
    let proxy = Proxy::start(&config("keys: [{field: /id, param: id_gt}]", ""), &upstream).await;
    let got = get(&proxy.url("/events?status=ok&offset=4000000&limit=50")).await;
    let problem = got.problem(400);
    assert_eq!(problem["first_page"], "/events?status=ok&limit=50");
    assert_eq!(
        got.header("link"),
        Some("</events?status=ok&limit=50>; rel=\"first\"")
    );
    assert!(
        problem["hint"]
            .as_str()
            .expect("hint")
            .contains("Link rel=\"next\"")
    );
    assert!(upstream.seen().is_empty());
    proxy.stop().await;
}

#[tokio::test]
async fn a_page_too_deep_to_read_is_a_502_rather_than_an_end_of_the_list() {
    // Valid JSON whose second item nests 200 levels: relayed raw, it would carry no next
    // link, and the client would stop there.
    let body = format!(
        "[{{\"id\":1}},{{\"id\":2,\"x\":{}{}}},{{\"id\":3}}]",
        "[".repeat(200),
        "]".repeat(200)
    );
    let body: &'static str = Box::leak(body.into_boxed_str());
    let upstream = Upstream::json(body).await;
    let proxy = Proxy::start(&config("keys: [{field: /id, param: id_gt}]", ""), &upstream).await;
    let problem = get(&proxy.url("/events?limit=2")).await.problem(502);
    assert_eq!(
        problem["type"],
        "urn:pagegate:problem:bad-upstream-response"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn keys_out_of_order_are_a_502_rather_than_a_wrong_cursor() {
    let upstream = Upstream::json(r#"[{"id":1},{"id":3},{"id":2},{"id":4}]"#).await;
    let proxy = Proxy::start(&config("keys: [{field: /id, param: id_gt}]", ""), &upstream).await;
    let problem = get(&proxy.url("/events?limit=3")).await.problem(502);
    assert_eq!(
        problem["type"],
        "urn:pagegate:problem:bad-upstream-response"
    );
    assert!(
        problem["detail"]
            .as_str()
            .expect("detail")
            .contains("item 2 out of key order")
    );
    let missing = Upstream::json(r#"[{"id":1},{"name":"no key"}]"#).await;
    let proxy2 = Proxy::start(&config("keys: [{field: /id, param: id_gt}]", ""), &missing).await;
    let problem = get(&proxy2.url("/events?limit=1")).await.problem(502);
    assert!(
        problem["detail"]
            .as_str()
            .expect("detail")
            .contains("item 1 of the backend's list has no usable key at /id")
    );
    proxy.stop().await;
    proxy2.stop().await;
}

#[tokio::test]
async fn a_backend_that_ignores_limit_is_cut_to_the_page_with_a_cursor() {
    let items: Vec<Value> = (1..=5000i64).map(|i| json!({"id": i})).collect();
    let body = serde_json::to_string(&items).expect("json");
    let upstream = Upstream::start(move |_| {
        let body = body.clone();
        async move { crate::support::json_response(body) }
    })
    .await;
    let proxy = Proxy::start(&config("keys: [{field: /id, param: id_gt}]", ""), &upstream).await;
    let got = get(&proxy.url("/events?limit=20")).await;
    let page = got.json();
    assert_eq!(page.as_array().expect("list").len(), 20);
    assert_eq!(got.header("pagegate-truncated"), Some("items"));
    assert!(next_link(&got).is_some());
    proxy.stop().await;
}

/// The id the cursors of `config("keys: [{field: /id, param: id_gt}]", ..)` carry.
fn events_route_id() -> u64 {
    pagegate::keyset_id("events", &["asc", "key", "/id", "id_gt"])
}

fn codec(keys: &[(u8, &str)], ttl: Option<Duration>) -> pagegate::CursorCodec {
    let keys = keys
        .iter()
        .map(|(id, secret)| pagegate::CursorKey {
            id: *id,
            secret: secret.as_bytes().to_vec(),
        })
        .collect();
    pagegate::CursorCodec::new(keys, ttl).expect("codec")
}

#[tokio::test]
#[expect(
    clippy::too_many_lines,
    reason = "one table of cursor attacks, each checked against one backend's request count"
)]
async fn every_cursor_attack_is_a_400_that_never_reaches_the_backend() {
    let items: Vec<Value> = (1..=100i64).map(|i| json!({"id": i})).collect();
    let upstream = backend(Arc::new(items), false).await;
    let yaml = config("keys: [{field: /id, param: id_gt}]", "");
    let proxy = Proxy::start(&yaml, &upstream).await;
    let first = get(&proxy.url("/events?limit=10&status=a")).await;
    let link = next_link(&first).expect("next");
    let good = link.split("cursor=").nth(1).expect("cursor").to_owned();
    let before = upstream.seen().len();

    let mut tampered = good.clone().into_bytes();
    let middle = tampered.len() / 2;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    let route = events_route_id();
    let binding = pagegate::binding_hash(&["/events"], ["status=a"]);
    let raw = serde_json::value::RawValue::from_string("10".to_owned()).expect("raw");
    let long_ago = SystemTime::now() - Duration::from_secs(7 * 86_400);
    let expired = codec(&[(1, SECRET)], Some(Duration::from_secs(3600))).encode(
        route,
        binding,
        &[&raw],
        long_ago,
    );
    let foreign = codec(&[(1, "another-pagegate-with-another-secret!!")], None).encode(
        route,
        binding,
        &[&raw],
        SystemTime::now(),
    );
    let other_route = codec(&[(1, SECRET)], None).encode(
        pagegate::keyset_id("users", &["asc", "key", "/id", "id_gt"]),
        binding,
        &[&raw],
        SystemTime::now(),
    );
    let unknown_kid =
        codec(&[(9, SECRET)], None).encode(route, binding, &[&raw], SystemTime::now());
    let cases = [
        (format!("status=a&cursor={tampered}"), "signature"),
        (
            format!("status=a&cursor={}", &good[..good.len() - 5]),
            "signature|base64|truncated",
        ),
        ("status=a&cursor=garbage!!".to_owned(), "base64"),
        ("status=a&cursor=".to_owned(), "truncated"),
        (
            format!(
                "status=a&cursor={}",
                "A".repeat(pagegate::MAX_CURSOR_LEN + 1)
            ),
            "4097 bytes",
        ),
        (format!("status=a&cursor={expired}"), "expired"),
        (format!("status=a&cursor={foreign}"), "signature"),
        (format!("status=a&cursor={other_route}"), "another route"),
        (format!("status=a&cursor={unknown_kid}"), "key id 9"),
        (
            format!("status=b&cursor={good}"),
            "different query parameters",
        ),
        (format!("cursor={good}"), "different query parameters"),
    ];
    for (query, reason) in &cases {
        let problem = get(&proxy.url(&format!("/events?{query}")))
            .await
            .problem(400);
        assert_eq!(
            problem["type"], "urn:pagegate:problem:invalid-cursor",
            "{query}"
        );
        let detail = problem["detail"].as_str().expect("detail");
        assert!(
            reason.split('|').any(|r| detail.contains(r)),
            "{query}: {detail}"
        );
    }
    assert_eq!(
        upstream.seen().len(),
        before,
        "an attack reached the backend"
    );
    assert_eq!(
        get(&proxy.url(&link)).await.status,
        200,
        "the genuine cursor still works"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn rotated_keys_verify_old_cursors_and_sign_with_the_newest() {
    let items: Vec<Value> = (1..=100i64).map(|i| json!({"id": i})).collect();
    let upstream = backend(Arc::new(items), false).await;
    let old = config("keys: [{field: /id, param: id_gt}]", "");
    let proxy = Proxy::start(&old, &upstream).await;
    let old_link = next_link(&get(&proxy.url("/events?limit=10")).await).expect("next");
    proxy.stop().await;

    let newer = "another-secret-for-key-two-0123456789";
    let both = old.replace(
        &format!("keys: [{{id: 1, secret: {SECRET}}}]"),
        &format!("keys: [{{id: 1, secret: {SECRET}}}, {{id: 2, secret: {newer}}}]"),
    );
    let proxy = Proxy::start(&both, &upstream).await;
    let page = get(&proxy.url(&old_link)).await;
    assert_eq!(
        page.status, 200,
        "a cursor signed with key 1 verifies after rotation"
    );
    let new_link = next_link(&page).expect("next");
    let new_cursor = new_link.split("cursor=").nth(1).expect("cursor");
    let route = events_route_id();
    let binding = pagegate::binding_hash(&["/events"], []);
    let only_two = codec(&[(2, newer)], None);
    assert!(
        only_two
            .decode(new_cursor, route, binding, 1, SystemTime::now())
            .is_ok(),
        "signed with key 2"
    );
    proxy.stop().await;

    let retired = old.replace(
        &format!("keys: [{{id: 1, secret: {SECRET}}}]"),
        &format!("keys: [{{id: 2, secret: {newer}}}]"),
    );
    let proxy = Proxy::start(&retired, &upstream).await;
    let problem = get(&proxy.url(&old_link)).await.problem(400);
    assert!(
        problem["detail"]
            .as_str()
            .expect("detail")
            .contains("key id 1")
    );
    assert_eq!(get(&proxy.url(&new_link)).await.status, 200);
    proxy.stop().await;
}

/// A backend with habits of its own: `inner` answers each request, and `answer` makes the
/// facade's response of what it got.
async fn facade(inner: &Upstream, answer: fn(Got) -> http::Response<pagegate::Body>) -> Upstream {
    let inner_url = inner.url();
    Upstream::start(move |req: http::Request<hyper::body::Incoming>| {
        let url = format!(
            "{inner_url}{}",
            req.uri().path_and_query().map_or("/", |pq| pq.as_str())
        );
        async move { answer(get(&url).await) }
    })
    .await
}

#[tokio::test]
async fn the_backends_own_link_never_reaches_the_client() {
    let items: Vec<Value> = (1..=15i64).map(|i| json!({"id": i})).collect();
    let inner = backend(Arc::new(items), false).await;
    // Each answer carries the backend's own offset-based Link.
    let upstream = facade(&inner, |got| {
        let mut response = crate::support::json_response(got.body);
        let link = "</events?offset=100>; rel=\"next\"".parse().expect("link");
        response.headers_mut().insert("link", link);
        response
    })
    .await;
    let proxy = Proxy::start(&config("keys: [{field: /id, param: id_gt}]", ""), &upstream).await;
    let first = get(&proxy.url("/events?limit=10")).await;
    assert!(
        next_link(&first).expect("next").contains("cursor="),
        "pagegate's link replaces the backend's"
    );
    let last = get(&proxy.url(&next_link(&first).expect("next"))).await;
    assert_eq!(last.json().as_array().expect("list").len(), 5);
    assert_eq!(
        last.header("link"),
        None,
        "the last page has no next link, not even the backend's"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_backends_own_member_named_like_the_cursor_field_is_read_as_pagegates() {
    let items: Vec<Value> = (1..=25i64).map(|i| json!({"id": i})).collect();
    let inner = backend(Arc::new(items), true).await;
    // Each envelope leads with the backend's own offset link under the same name (as DRF's
    // `next` or Laravel's `next_cursor`).
    let upstream = facade(&inner, |got| {
        let own = "{\"next_cursor\":\"/events?offset=10\",";
        crate::support::json_response(got.text().replacen('{', own, 1))
    })
    .await;
    let yaml = config(
        "keys: [{field: /id, param: id_gt}]\n        next_cursor_field: next_cursor",
        "items: /data",
    );
    let proxy = Proxy::start(&yaml, &upstream).await;
    let first = get(&proxy.url("/events?limit=10")).await;
    let cursor = first.json()["next_cursor"]
        .as_str()
        .expect("a cursor")
        .to_owned();
    assert!(
        next_link(&first)
            .expect("link")
            .ends_with(&format!("cursor={cursor}")),
        "{cursor}: the parsed member is pagegate's cursor"
    );
    let (seen, pages) = walk(&proxy, "/events?limit=10", "/data").await;
    assert_eq!((seen.len(), pages), (25, 3));
    proxy.stop().await;
}

#[tokio::test]
async fn a_cursor_only_works_on_the_path_it_was_minted_for() {
    let items: Vec<Value> = (1..=50i64).map(|i| json!({"id": i})).collect();
    let upstream = backend(Arc::new(items), false).await;
    let yaml = config("keys: [{field: /id, param: id_gt}]", "")
        .replace("path: /events", "path: /users/{user}/events");
    let proxy = Proxy::start(&yaml, &upstream).await;
    let link = next_link(&get(&proxy.url("/users/1/events?limit=10")).await).expect("next");
    assert!(link.starts_with("/users/1/events?"));
    assert_eq!(get(&proxy.url(&link)).await.status, 200);
    let stolen = link.replace("/users/1/", "/users/2/");
    let problem = get(&proxy.url(&stolen)).await.problem(400);
    assert!(
        problem["detail"]
            .as_str()
            .expect("detail")
            .contains("different query parameters")
    );
    // Nor with each path spelled as a query piece beside the other: the path is bound apart
    // from the query.
    let link = get(&proxy.url("/users/1/events?/users/2/events&limit=10")).await;
    let link = next_link(&link).expect("next");
    let query = link
        .strip_prefix("/users/1/events?")
        .expect("the same path");
    assert!(query.contains("/users/2/events"), "{query}");
    let swapped = format!(
        "/users/2/events?{}",
        query.replace("/users/2/events", "/users/1/events")
    );
    get(&proxy.url(&swapped)).await.problem(400);
    proxy.stop().await;
}

#[tokio::test]
async fn a_cursor_minted_before_the_key_or_order_changed_is_refused() {
    let items: Vec<Value> = (1..=50i64).map(|i| json!({"id": i})).collect();
    let upstream = backend(Arc::new(items), false).await;
    let before = config("keys: [{field: /id, param: id_gt}]", "");
    let proxy = Proxy::start(&before, &upstream).await;
    let link = next_link(&get(&proxy.url("/events?limit=10")).await).expect("next");
    assert_eq!(get(&proxy.url(&link)).await.status, 200);
    proxy.stop().await;

    // The same route, secret and path, paged another way: the cursor's values would mean
    // another place in the list, so it is refused before anything is sent.
    let changes = [
        "keys: [{field: /id, param: id_gt}]\n        order: desc",
        "keys: [{field: /id, param: id_after}]",
        "keys: [{field: /uid, param: id_gt}]",
        "keys: [{field: /id, param: id_gt}]\n        set_params: {sort: id}",
    ];
    for change in changes {
        let proxy = Proxy::start(&config(change, ""), &upstream).await;
        let seen = upstream.seen().len();
        let problem = get(&proxy.url(&link)).await.problem(400);
        let detail = problem["detail"].as_str().expect("detail");
        assert!(detail.contains("earlier key, order"), "{change}: {detail}");
        assert_eq!(
            upstream.seen().len(),
            seen,
            "{change}: the backend was asked"
        );
        proxy.stop().await;
    }
    // Unchanged, the old cursor still pages.
    let proxy = Proxy::start(&before, &upstream).await;
    assert_eq!(get(&proxy.url(&link)).await.status, 200);
    proxy.stop().await;
}
