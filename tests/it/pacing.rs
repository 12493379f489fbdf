//! `limits.pace` through the real server: a fast backend's answer reaches the client at the
//! pace, the backend is held back (backpressure, not buffering), and the wait is counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};

use crate::support::{Proxy, Upstream};

const TOTAL: u64 = 64 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;

/// A backend that streams 64 MiB as fast as it is read, counting what it produced.
async fn fast_backend(produced: Arc<AtomicU64>) -> Upstream {
    Upstream::start(move |_req| {
        let produced = Arc::clone(&produced);
        async move {
            let block = Bytes::from(vec![b'x'; CHUNK]);
            let frames = futures_util::stream::unfold(0u64, move |sent| {
                let (block, produced) = (block.clone(), Arc::clone(&produced));
                async move {
                    if sent >= TOTAL {
                        return None;
                    }
                    produced.fetch_add(CHUNK as u64, Ordering::Relaxed);
                    let frame: Result<_, pagegate::BoxError> = Ok(http_body::Frame::data(block));
                    Some((frame, sent + CHUNK as u64))
                }
            });
            http::Response::new(StreamBody::new(frames).boxed())
        }
    })
    .await
}

#[tokio::test]
async fn a_paced_answer_comes_at_the_pace_and_holds_the_backend_back() {
    let produced = Arc::new(AtomicU64::new(0));
    let upstream = fast_backend(Arc::clone(&produced)).await;
    let proxy = Proxy::start(
        "admin: {listen: 127.0.0.1:0}
default: {action: deny}
upstreams: {app: {url: '{upstream}'}}
routes:
  - {name: export, path: /export, upstream: app, limits: {pace: {bytes_per_second: 256KiB}}}
",
        &upstream,
    )
    .await;
    let response = crate::support::get_head(&proxy.url("/export")).await;
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let start = Instant::now();
    let mut received = 0u64;
    while start.elapsed() < Duration::from_millis(1500) {
        match body.frame().await {
            Some(Ok(frame)) => received += frame.data_ref().map_or(0, |d| d.len() as u64),
            other => panic!("the body ended early: {other:?}"),
        }
    }
    // A second of burst, then 256 KiB a second: about 640 KiB in 1.5 s.
    let kib = received / 1024;
    assert!(
        (512..=900).contains(&kib),
        "{kib} KiB in 1.5 s at 256 KiB/s"
    );
    // The backend could have sent all 64 MiB by now; it was held back by the socket buffers
    // in between (a few MiB on loopback), not buffered in pagegate.
    let sent = produced.load(Ordering::Relaxed) / (1024 * 1024);
    assert!(
        sent < 16,
        "the backend produced {sent} MiB for {kib} KiB delivered"
    );
    drop(body);
    crate::support::assert_metrics(
        &proxy.metrics_text().await,
        &[
            "pagegate_limit_decisions_total{route=\"export\",limit=\"pace\",decision=\"paced\",tenant_class=\"default\"} 1",
        ],
    );
    proxy.stop().await;
}

/// Pacing is per process and only for enforced limits: a route with only `pace` and
/// `store: redis` makes no Redis call (a dead Redis does not refuse it under `closed`), and a
/// `report_only` route paces nothing.
#[tokio::test]
async fn pace_alone_needs_no_redis_and_report_only_paces_nothing() {
    let upstream = Upstream::start(|_req| async move {
        http::Response::new(crate::support::bodies::pattern(256 * 1024, 16 * 1024))
    })
    .await;
    let dead = crate::support::redis::free_port();
    let proxy = Proxy::start(
        &format!(
            "redis: {{url: 'redis://127.0.0.1:{dead}', timeout: 50ms}}
default: {{action: deny}}
upstreams: {{app: {{url: '{{upstream}}'}}}}
routes:
  - {{name: shared, path: /shared, upstream: app,
      limits: {{store: redis, on_redis_error: closed, pace: {{bytes_per_second: 1MiB}}}}}}
  - {{name: report, path: /report, upstream: app,
      limits: {{report_only: true, pace: {{bytes_per_second: 16KiB}}}}}}
"
        ),
        &upstream,
    )
    .await;
    let got = crate::support::get(&proxy.url("/shared")).await;
    assert_eq!(got.status, 200, "no Redis call for pacing");
    assert_eq!(got.body.len(), 256 * 1024);
    // Paced at 16 KiB/s, 256 KiB would take 15 s.
    let start = Instant::now();
    let got = crate::support::get(&proxy.url("/report")).await;
    assert_eq!(got.body.len(), 256 * 1024);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "report-only paced: {:?}",
        start.elapsed()
    );
    proxy.stop().await;
}
