//! Per-route stacks driven in process (no sockets): each route's layers exist only where its
//! config asks for them, refusals never reach the terminal, and every error becomes its problem
//! document at the one rescue point.

use std::sync::{Arc, Mutex};

use crate::support::{bodies, full, json_response};
use bytes::Bytes;
use http_body_util::BodyExt;
use pagegate::Config;
use pagegate::HeldBudget;
use pagegate::ListPolicy;
use pagegate::UpstreamError;
use pagegate::{BoxError, Request, Response};
use pagegate::{Metrics, Outcome, RouteMetrics};
use pagegate::{Refuse, RouteService};
use pagegate::{RouteParts, route_stack};

/// The requests a terminal received, and what it answers.
#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    fn seen(&self) -> Vec<String> {
        self.seen.lock().expect("lock").clone()
    }

    /// A terminal that records the request target and answers with `answer`.
    fn terminal<F>(
        &self,
        answer: F,
    ) -> impl tower::Service<
        Request,
        Response = Response,
        Error = BoxError,
        Future = std::future::Ready<Result<Response, BoxError>>,
    > + Clone
    + Send
    + Sync
    + 'static
    where
        F: Fn() -> Result<Response, BoxError> + Clone + Send + Sync + 'static,
    {
        let seen = Arc::clone(&self.seen);
        tower::service_fn(move |req: Request| {
            let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
            seen.lock()
                .expect("lock")
                .push(format!("{} {target}", req.method()));
            std::future::ready(answer())
        })
    }
}

const YAML: &str = "
upstreams: {app: {url: 'http://127.0.0.1:9'}}
routes:
  - {name: events, path: /events, methods: [GET], upstream: app, list: {default_limit: 2, max_limit: 3}}
";

fn list_route() -> Arc<ListPolicy> {
    let config = Config::parse("test.yaml", YAML).expect("valid");
    Arc::new(config.routes[0].list.clone().expect("a list route"))
}

fn parts(metrics: &Metrics, list: Option<Arc<ListPolicy>>) -> RouteParts {
    let route = metrics.route("events", list.is_some());
    RouteParts::new(
        "events",
        route,
        list,
        None,
        HeldBudget::new(64 << 20, 64 << 20),
    )
}

fn get(target: &str) -> Request {
    http::Request::get(target)
        .body(full(Bytes::new()))
        .expect("request")
}

async fn call(route: &RouteService, req: Request) -> (Response, Bytes) {
    let Ok(response) = route.call(req).await;
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    (
        http::Response::from_parts(parts, full(bytes.clone())),
        bytes,
    )
}

fn problem(response: &Response, bytes: &Bytes, status: u16, kind: &str) {
    assert_eq!(
        response.status(),
        status,
        "{}",
        String::from_utf8_lossy(bytes)
    );
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let doc: serde_json::Value = serde_json::from_slice(bytes).expect("json");
    assert_eq!(doc["type"], kind);
    assert_eq!(doc["status"], status);
}

fn tagged(response: &Response) -> &str {
    response
        .extensions()
        .get::<Arc<RouteMetrics>>()
        .expect("every answer is tagged with its route")
        .name()
}

#[tokio::test]
async fn a_list_route_refuses_bad_pages_without_calling_its_terminal() {
    let metrics = Metrics::default();
    let recorder = Recorder::default();
    let route = route_stack(
        parts(&metrics, Some(list_route())),
        recorder.terminal(|| Ok(json_response("[]"))),
    );
    for target in [
        "/events?limit=-1",
        "/events?limit=1e9",
        "/events?LIMIT=5",
        "/events?offset=999999",
    ] {
        let (response, bytes) = call(&route, get(target)).await;
        assert_eq!(response.status(), 400, "{target}");
        assert_eq!(tagged(&response), "events");
        assert_eq!(
            response.extensions().get::<Outcome>(),
            Some(&Outcome::Refused)
        );
        assert!(bytes.starts_with(b"{\"type\":\"urn:pagegate:problem:"));
    }
    assert!(recorder.seen().is_empty(), "{:?}", recorder.seen());
}

#[tokio::test]
async fn a_list_route_rewrites_clamps_and_cuts() {
    let metrics = Metrics::default();
    let recorder = Recorder::default();
    let route = route_stack(
        parts(&metrics, Some(list_route())),
        recorder.terminal(|| Ok(http::Response::new(bodies::json_items(1, 10, 4)))),
    );
    let (response, bytes) = call(&route, get("/events?limit=50&q=a")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["pagegate-clamped"],
        "limit=3; requested=50"
    );
    assert_eq!(response.headers()["pagegate-truncated"], "items");
    assert_eq!(
        response.extensions().get::<Outcome>(),
        Some(&Outcome::Truncated),
        "a cut outranks a clamp"
    );
    let items: Vec<serde_json::Value> = serde_json::from_slice(&bytes).expect("valid JSON");
    assert_eq!(items.len(), 3);
    assert_eq!(recorder.seen(), ["GET /events?limit=3&q=a"]);
    assert!(
        metrics
            .encode()
            .contains("pagegate_list_cuts_total{route=\"events\",reason=\"items\"} 1"),
        "{}",
        metrics.encode()
    );
}

#[tokio::test]
async fn a_route_without_a_list_policy_has_no_list_layers() {
    let metrics = Metrics::default();
    let recorder = Recorder::default();
    let route = route_stack(
        parts(&metrics, None),
        recorder.terminal(|| Ok(http::Response::new(bodies::json_items(1, 10, 4)))),
    );
    let (response, bytes) = call(&route, get("/events?limit=abc")).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("pagegate-truncated").is_none());
    let items: Vec<serde_json::Value> = serde_json::from_slice(&bytes).expect("valid JSON");
    assert_eq!(items.len(), 10, "nothing holds or cuts the body");
    assert_eq!(recorder.seen(), ["GET /events?limit=abc"]);
    assert!(response.extensions().get::<Outcome>().is_none(), "passed");
}

#[tokio::test]
async fn other_methods_of_a_list_route_are_checked_but_not_rewritten_nor_guarded() {
    let metrics = Metrics::default();
    let recorder = Recorder::default();
    let route = route_stack(
        parts(&metrics, Some(list_route())),
        recorder.terminal(|| Ok(json_response("{\"created\":true}"))),
    );
    // A backend that runs its list handler for any method would read this query as a GET's.
    let post = |uri: &str| http::Request::post(uri).body(full("{}")).expect("request");
    let (response, _) = call(&route, post("/events?limit=abc")).await;
    assert_eq!(response.status(), 400);
    assert!(recorder.seen().is_empty());
    // Within the policy: sent as it came (nothing injected), the answer not read as a page.
    let (response, bytes) = call(&route, post("/events?limit=3")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(bytes, "{\"created\":true}");
    assert_eq!(recorder.seen(), ["POST /events?limit=3"]);
}

#[tokio::test]
async fn errors_are_rescued_into_their_status_and_problem() {
    let metrics = Metrics::default();
    type Case = (fn() -> BoxError, u16, &'static str);
    let cases: [Case; 3] = [
        (
            || {
                UpstreamError::Timeout {
                    upstream: "app".to_owned(),
                    stage: "answer",
                    after: std::time::Duration::from_secs(1),
                }
                .into()
            },
            504,
            "urn:pagegate:problem:upstream-timeout",
        ),
        (
            || {
                UpstreamError::Unavailable {
                    upstream: "app".to_owned(),
                }
                .into()
            },
            502,
            "urn:pagegate:problem:upstream-unavailable",
        ),
        (
            || "secret internal detail".into(),
            500,
            "urn:pagegate:problem:internal",
        ),
    ];
    for (error, status, kind) in cases {
        let recorder = Recorder::default();
        let route = route_stack(
            parts(&metrics, None),
            recorder.terminal(move || Err(error())),
        );
        let (response, bytes) = call(&route, get("/events")).await;
        problem(&response, &bytes, status, kind);
        assert!(
            !String::from_utf8_lossy(&bytes).contains("secret"),
            "internal detail stays in the log"
        );
        assert_eq!(tagged(&response), "events");
    }
}

#[tokio::test]
async fn the_deny_route_answers_404() {
    let metrics = Metrics::default();
    let route = route_stack(parts(&metrics, None), Refuse::no_route());
    let (response, bytes) = call(&route, get("/nowhere")).await;
    problem(&response, &bytes, 404, "urn:pagegate:problem:no-route");
    let doc: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(doc["detail"], "no route matches GET /nowhere");
}

#[tokio::test]
async fn every_leaf_error_has_its_status() {
    use pagegate::CursorError;
    use pagegate::{GuardError, HoldError};
    let metrics = Metrics::default();
    type Case = (fn() -> BoxError, u16, &'static str);
    let cases: [Case; 4] = [
        (
            || HoldError::Busy.into(),
            503,
            "urn:pagegate:problem:overloaded",
        ),
        (
            || GuardError::OrderViolation { index: 3 }.into(),
            502,
            "urn:pagegate:problem:bad-upstream-response",
        ),
        (
            || CursorError::Truncated.into(),
            400,
            "urn:pagegate:problem:invalid-cursor",
        ),
        (
            || {
                pagegate::PaginationError::Zero {
                    param: "limit".to_owned(),
                }
                .into()
            },
            400,
            "urn:pagegate:problem:invalid-pagination-parameter",
        ),
    ];
    for (error, status, kind) in cases {
        let route = route_stack(
            parts(&metrics, None),
            Recorder::default().terminal(move || Err(error())),
        );
        let (response, bytes) = call(&route, get("/events")).await;
        problem(&response, &bytes, status, kind);
        if status == 503 {
            assert_eq!(response.headers()["retry-after"], "1");
        }
    }
}
