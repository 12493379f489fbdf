//! The guard on scripted bodies: frames split anywhere, `Pending` between them, trailers, and a
//! tail that must never be read.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};

use super::*;
use crate::Response;
use crate::cursor::route_id;
use crate::list::config::{
    KeyField, KeysetPolicy, ListPolicy, OffsetParam, OnInvalid, OnViolation, Order,
};
use crate::list::guard::cut::finish;
use crate::list::guard::hold::hold;
use crate::list::pagination::{KeysetPlan, PagePlan};
use crate::list::scan::ItemsPath;

/// A body yielding `chunks`, yielding to the scheduler (a real `Pending`) before each one, then
/// trailers; counts how many chunks were pulled.
fn scripted(chunks: Vec<&'static str>, pulled: Arc<AtomicUsize>) -> crate::Body {
    let frames =
        futures_util::stream::unfold((chunks.into_iter(), false), move |(mut rest, done)| {
            let pulled = Arc::clone(&pulled);
            async move {
                if done {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
                match rest.next() {
                    Some(chunk) => {
                        pulled.fetch_add(1, Ordering::SeqCst);
                        let frame = http_body::Frame::data(Bytes::from_static(chunk.as_bytes()));
                        Some((Ok::<_, crate::BoxError>(frame), (rest, false)))
                    }
                    None => {
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("x-done", http::HeaderValue::from_static("1"));
                        Some((Ok(http_body::Frame::trailers(trailers)), (rest, true)))
                    }
                }
            }
        });
    StreamBody::new(frames).boxed()
}

fn policy(items: &[&str], keyset: bool) -> ListPolicy {
    ListPolicy {
        limit_param: "limit".to_owned(),
        offset: OffsetParam::Offset("offset".to_owned()),
        default_limit: 2,
        max_limit: 10,
        max_offset: 100,
        on_violation: OnViolation::Clamp,
        max_items: 10,
        max_bytes: 1024,
        items: ItemsPath(items.iter().map(|s| (*s).to_owned()).collect()),
        on_invalid: OnInvalid::Pass,
        keyset: keyset.then(|| {
            Arc::new(KeysetPolicy {
                keys: vec![KeyField::new("/id".to_owned(), "id_gt".to_owned())],
                order: Order::Asc,
                set_params: Vec::new(),
                cursor_param: "cursor".to_owned(),
                next_cursor_field: (!items.is_empty()).then(|| "next".to_owned()),
                route_id: route_id("t"),
                codec: Arc::new(crate::cursor::test_codec()),
            })
        }),
        report_only: false,
    }
}

fn plan(policy: &ListPolicy, page_size: u64) -> PagePlan {
    PagePlan {
        page_size,
        clamped_from: None,
        keyset: policy.keyset.as_ref().map(|k| KeysetPlan {
            policy: Arc::clone(k),
            binding: 0,
            after: None,
            next_base: "/t?cursor=".to_owned(),
        }),
    }
}

async fn run(
    chunks: Vec<&'static str>,
    policy: &ListPolicy,
    page_size: u64,
) -> (Response, String, usize) {
    let pulled = Arc::new(AtomicUsize::new(0));
    let response = http::Response::new(scripted(chunks, Arc::clone(&pulled)));
    let plan = plan(policy, page_size);
    let held = hold(response, policy, &plan).await.expect("held");
    let response = finish(
        held,
        policy,
        &plan,
        &crate::telemetry::Metrics::default().route("t", true),
    )
    .expect("finished");
    let (parts, pieces) = response;
    let budget = HeldBudget::new(1 << 30, 1 << 30);
    let body = HeldBody::new(&budget, pieces, None, held::Sending::default());
    let bytes = body.collect().await.expect("body").to_bytes();
    let length = parts.headers[http::header::CONTENT_LENGTH]
        .to_str()
        .expect("ascii");
    assert_eq!(
        length,
        bytes.len().to_string(),
        "Content-Length matches the body sent"
    );
    let text = String::from_utf8(bytes.to_vec()).expect("utf-8");
    (
        http::Response::from_parts(parts, crate::body::full(bytes)),
        text,
        pulled.load(Ordering::SeqCst),
    )
}

#[tokio::test]
async fn a_complete_page_split_anywhere_is_relayed_unchanged() {
    let p = policy(&[], false);
    let (response, text, _) = run(vec!["[{\"id\"", ":1},", "{\"id\":2", "}", "]"], &p, 2).await;
    assert_eq!(text, "[{\"id\":1},{\"id\":2}]");
    assert!(response.headers().get(TRUNCATED_HEADER).is_none());
}

#[tokio::test]
async fn more_items_than_the_page_are_cut_and_the_rest_never_read() {
    let p = policy(&[], false);
    let chunks = vec!["[1,", "2,", "3,", "4,", "5,", "6]"];
    let (response, text, pulled) = run(chunks, &p, 2).await;
    assert_eq!(text, "[1,2]");
    assert_eq!(response.headers()[TRUNCATED_HEADER], "items");
    // `3` is only known to be complete when its `,` arrives; nothing after that is read.
    assert_eq!(pulled, 3);
}

#[tokio::test]
async fn keyset_pages_drop_the_probe_item_and_link_to_the_next() {
    let p = policy(&[], true);
    let (response, text, _) = run(vec!["[{\"id\":1},{\"id\":", "2},{\"id\":3}]"], &p, 2).await;
    assert_eq!(text, "[{\"id\":1},{\"id\":2}]");
    let link = response.headers()[http::header::LINK]
        .to_str()
        .expect("ascii");
    assert!(
        link.starts_with("</t?cursor=") && link.ends_with(">; rel=\"next\""),
        "{link}"
    );
    assert!(response.headers().get(TRUNCATED_HEADER).is_none());
    let (last, text, _) = run(vec!["[{\"id\":1},{\"id\":2}]"], &p, 2).await;
    assert_eq!(text, "[{\"id\":1},{\"id\":2}]");
    assert!(
        last.headers().get(http::header::LINK).is_none(),
        "the last page has no next link"
    );
}

#[tokio::test]
async fn envelopes_get_the_cursor_field_and_keep_their_tail() {
    let p = policy(&["data"], true);
    let chunks = vec![
        "{\"data\":[{\"id\":1},",
        "{\"id\":2},{\"id\":3}],\"meta\":{\"n\":3}}",
    ];
    let (_, text, _) = run(chunks, &p, 2).await;
    let value: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(value["data"], serde_json::json!([{"id": 1}, {"id": 2}]));
    assert_eq!(value["meta"], serde_json::json!({"n": 3}));
    assert!(value["next"].is_string());
    let (_, text, _) = run(vec!["{\"data\":[{\"id\":1}]}"], &p, 2).await;
    assert_eq!(text, "{\"data\":[{\"id\":1}],\"next\":null}");
    // The backend's own `next` (DRF's offset link) stays, before pagegate's, which parsers
    // that keep the last of two read.
    let chunks =
        vec!["{\"next\":\"/events?offset=2\",\"data\":[{\"id\":1},{\"id\":2},{\"id\":3}]} "];
    let (_, text, _) = run(chunks, &p, 2).await;
    assert!(
        text.starts_with(
            "{\"next\":\"/events?offset=2\",\"data\":[{\"id\":1},{\"id\":2}],\"next\":\""
        ),
        "{text}"
    );
    assert!(text.ends_with("\"}"), "{text}");
    let value: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_ne!(value["next"], "/events?offset=2");
}

#[tokio::test]
async fn a_byte_cut_inside_an_envelope_closes_it() {
    let mut p = policy(&["data"], false);
    p.max_bytes = 40;
    let chunks = vec![
        "{\"data\":[{\"id\":1},{\"id\":2},",
        "{\"id\":3},{\"id\":4},{\"id\":5}]}",
    ];
    let (response, text, _) = run(chunks, &p, 10).await;
    assert_eq!(response.headers()[TRUNCATED_HEADER], "bytes");
    assert_eq!(text, "{\"data\":[{\"id\":1},{\"id\":2},{\"id\":3}]}");
    // On a keyset route the envelope's cursor closes it, as its last member.
    let mut p = policy(&["data"], true);
    p.max_bytes = 40;
    let chunks = vec![
        "{\"data\":[{\"id\":1},{\"id\":2},",
        "{\"id\":3},{\"id\":4},{\"id\":5}]}",
    ];
    let (_, text, _) = run(chunks, &p, 10).await;
    assert!(
        text.starts_with("{\"data\":[{\"id\":1},{\"id\":2},{\"id\":3}],\"next\":\""),
        "{text}"
    );
    let value: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert!(value["next"].is_string(), "{text}");
}

/// Streams `chunks` through a [`ReportBody`] with a page of `page_size`; returns what came out
/// and the `pagegate_reported_total` lines.
async fn report(chunks: Vec<&'static str>, page_size: u64) -> (Bytes, String) {
    let metrics = crate::telemetry::Metrics::default();
    let route = metrics.route("r", true);
    let body = ReportBody::new(
        scripted(chunks, Arc::new(AtomicUsize::new(0))),
        &policy(&[], false),
        page_size,
        route,
    );
    let out = body.collect().await.expect("body").to_bytes();
    let text = metrics.encode();
    let lines = text
        .lines()
        .filter(|l| l.starts_with("pagegate_reported_total"))
        .collect::<Vec<_>>()
        .join("\n");
    (out, lines)
}

#[tokio::test]
async fn report_only_passes_every_byte_and_counts_what_the_guard_would_have_done() {
    // Over the page: passed whole, counted once.
    let (out, lines) = report(vec!["[1,2,", "3,4]"], 2).await;
    assert_eq!(out, "[1,2,3,4]");
    assert_eq!(
        lines,
        "pagegate_reported_total{route=\"r\",what=\"cut_items\"} 1"
    );
    // Unfinished: passed as it came, counted.
    let (out, lines) = report(vec!["[1,2,", "3"], 10).await;
    assert_eq!(out, "[1,2,3");
    assert_eq!(
        lines,
        "pagegate_reported_total{route=\"r\",what=\"unfinished\"} 1"
    );
    // Within the policy: nothing to report.
    let (out, lines) = report(vec!["[1,", "2]"], 10).await;
    assert_eq!(out, "[1,2]");
    assert_eq!(lines, "");
}

#[tokio::test]
async fn a_page_too_deep_to_read_is_refused_once_its_list_opened_or_on_a_keyset_route() {
    let nested = format!("{}{}", "[".repeat(200), "]".repeat(200));
    // In an item: the list had opened, its items would reach the client uncounted.
    let in_list: &'static str =
        Box::leak(format!("[{{\"id\":1,\"x\":{nested}}}]").into_boxed_str());
    // Before the list: nothing a client reads as the list was seen yet.
    let before: &'static str =
        Box::leak(format!("{{\"meta\":{nested},\"data\":[]}}").into_boxed_str());
    let hold_with = |path: &'static [&'static str], body: &'static str, keyset: bool| async move {
        let p = policy(path, keyset);
        let response = http::Response::new(scripted(vec![body], Arc::default()));
        hold(response, &p, &plan(&p, 2)).await.map(|held| held.raw)
    };
    for (path, body, keyset) in [
        (&[][..], in_list, false),
        (&[], in_list, true),
        (&["data"], before, true),
    ] {
        let refused = hold_with(path, body, keyset).await.expect_err("refused");
        assert!(
            matches!(
                refused.downcast_ref::<GuardError>(),
                Some(GuardError::NotJson)
            ),
            "{refused}"
        );
    }
    // Elsewhere it is another format, which `on_invalid` decides on.
    assert!(
        hold_with(&["data"], before, false)
            .await
            .expect("relayed raw")
    );
}
