//! The access log, driven in process: one event per request, written when the response body
//! ends (or is dropped), with the bytes actually sent and the times to first and last byte.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::full;
use crate::support::logs::capture;
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use pagegate::{AccessLogLayer, Metrics, REQUEST_ID};
use pagegate::{Body, Request, Response};
use tower::{Layer, ServiceExt};

/// Three 1000-byte frames, 40 ms apart.
fn slow_body() -> Body {
    let frames = futures_util::stream::unfold(0, |sent| async move {
        if sent == 3 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
        let frame: Result<_, pagegate::BoxError> =
            Ok(http_body::Frame::data(Bytes::from(vec![b'x'; 1000])));
        Some((frame, sent + 1))
    });
    StreamBody::new(frames).boxed()
}

/// A route that tags its answers as `export` and records the request id it received.
fn export(
    metrics: &Metrics,
    received: Arc<Mutex<Option<String>>>,
) -> impl tower::Service<
    Request,
    Response = Response,
    Error = Infallible,
    Future = std::future::Ready<Result<Response, Infallible>>,
> + Clone {
    let route = metrics.route("export", false);
    tower::service_fn(move |req: Request| {
        *received.lock().expect("lock") = req
            .headers()
            .get(REQUEST_ID)
            .map(|v| v.to_str().expect("ascii").to_owned());
        let mut response = http::Response::new(slow_body());
        response.extensions_mut().insert(Arc::clone(&route));
        std::future::ready(Ok(response))
    })
}

#[tokio::test]
async fn a_streamed_body_is_logged_when_it_ends_with_its_bytes_and_times() {
    let (captured, _guard) = capture();
    let metrics = Metrics::default();
    let received = Arc::new(Mutex::new(None));
    let service = AccessLogLayer::new(true).layer(export(&metrics, Arc::clone(&received)));
    let request = http::Request::get("/events/export?x=1")
        .header(REQUEST_ID, "req-42")
        .body(full(Bytes::new()))
        .expect("request");
    let Ok(response) = service.oneshot(request).await;
    assert_eq!(
        response.headers()[REQUEST_ID],
        "req-42",
        "returned to the client"
    );
    assert_eq!(
        received.lock().expect("lock").as_deref(),
        Some("req-42"),
        "and forwarded"
    );
    assert!(
        captured.requests().is_empty(),
        "nothing is logged before the body ends"
    );

    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(body.len(), 3000);
    let logged = captured.requests();
    assert_eq!(logged.len(), 1, "{logged:?}");
    let event = &logged[0];
    assert_eq!(event["request_id"], "req-42");
    assert_eq!(event["method"], "GET");
    assert_eq!(event["path"], "/events/export");
    assert_eq!(event["route"], "export");
    assert_eq!(event["status"], 200);
    assert_eq!(event["outcome"], "passed");
    assert_eq!(event["bytes"], 3000);
    let first = event["first_byte_us"].as_u64().expect("first byte");
    let last = event["last_byte_us"].as_u64().expect("last byte");
    assert!(last >= 120_000, "three 40 ms frames: {last} µs");
    assert!(first < last, "{first} < {last}");
    assert!(
        metrics
            .encode()
            .contains("pagegate_requests_total{route=\"export\",status=\"200\"} 1")
    );
}

#[tokio::test]
async fn a_body_dropped_midway_is_logged_as_client_closed_with_a_generated_id() {
    let (captured, _guard) = capture();
    let metrics = Metrics::default();
    let received = Arc::new(Mutex::new(None));
    let service = AccessLogLayer::new(true).layer(export(&metrics, Arc::clone(&received)));
    let request = http::Request::get("/events/export")
        .body(full(Bytes::new()))
        .expect("request");
    let Ok(response) = service.oneshot(request).await;
    let id = response.headers()[REQUEST_ID]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(id.len(), 32, "generated");
    assert_eq!(received.lock().expect("lock").as_deref(), Some(id.as_str()));
    let mut body = response.into_body();
    let first = body.frame().await.expect("a frame").expect("data");
    assert_eq!(first.data_ref().map(Bytes::len), Some(1000));
    drop(body);
    let logged = captured.requests();
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(logged[0]["outcome"], "client_closed");
    assert_eq!(logged[0]["bytes"], 1000);
    assert_eq!(logged[0]["request_id"], id.as_str());
}

#[tokio::test]
async fn with_the_log_off_ids_and_counts_remain() {
    let (captured, _guard) = capture();
    let metrics = Metrics::default();
    let received = Arc::new(Mutex::new(None));
    let service = AccessLogLayer::new(false).layer(export(&metrics, received));
    let request = http::Request::get("/")
        .body(full(Bytes::new()))
        .expect("request");
    let Ok(response) = service.oneshot(request).await;
    assert!(response.headers().contains_key(REQUEST_ID));
    let _ = response.into_body().collect().await;
    assert!(captured.requests().is_empty());
    assert!(
        metrics
            .encode()
            .contains("pagegate_requests_total{route=\"export\",status=\"200\"} 1")
    );
}

#[tokio::test]
async fn bodies_never_read_for_head_204_and_304_are_not_client_closes() {
    let (captured, _guard) = capture();
    for (method, status) in [("HEAD", 200), ("GET", 204), ("GET", 304)] {
        let service = AccessLogLayer::new(true).layer(tower::service_fn(move |_: Request| {
            let mut response = http::Response::new(slow_body());
            *response.status_mut() = http::StatusCode::from_u16(status).expect("status");
            std::future::ready(Ok::<Response, Infallible>(response))
        }));
        let request = http::Request::builder()
            .method(method)
            .uri("/x")
            .body(full(Bytes::new()))
            .expect("request");
        let Ok(response) = service.oneshot(request).await;
        drop(response); // as hyper does: such bodies are never polled
    }
    let logged = captured.requests();
    let outcomes: Vec<_> = logged
        .iter()
        .map(|e| (e["status"].clone(), e["outcome"].clone()))
        .collect();
    assert_eq!(
        outcomes,
        [
            (200.into(), "passed".into()),
            (204.into(), "passed".into()),
            (304.into(), "passed".into())
        ]
    );
}

#[tokio::test]
async fn a_client_gone_before_the_head_is_still_logged() {
    let (captured, _guard) = capture();
    let service = AccessLogLayer::new(true).layer(tower::service_fn(|_: Request| {
        std::future::pending::<Result<Response, Infallible>>()
    }));
    let request = http::Request::get("/slow")
        .body(full(Bytes::new()))
        .expect("request");
    let waited = tokio::time::timeout(Duration::from_millis(30), service.oneshot(request)).await;
    assert!(
        waited.is_err(),
        "the backend never answered; the client gave up"
    );
    let logged = captured.requests();
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(logged[0]["outcome"], "client_closed");
    assert_eq!(logged[0]["path"], "/slow");
    assert!(
        logged[0].get("status").is_none(),
        "no status was sent: {}",
        logged[0]
    );
    assert!(
        logged[0]["last_byte_us"]
            .as_u64()
            .is_some_and(|t| t >= 30_000)
    );
}
