//! Request bodies: the response timeout counts from the end of the upload, a stalled upload is
//! the client's fault (408), and malformed chunking is a 400 — never blamed on the backend.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::{Proxy, Upstream, json_response, send};
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const YAML: &str = "
shutdown_grace: 1s
default: {action: pass, upstream: app}
upstreams: {app: {url: '{upstream}', response_timeout: 300ms, idle_timeout: 400ms}}
";

/// An upstream that reads the whole body and answers with its length, recording how the
/// body ended (`Ok(bytes)` or the error).
async fn counting(ends: Arc<Mutex<Vec<Result<usize, String>>>>) -> Upstream {
    Upstream::start(move |req| {
        let ends = Arc::clone(&ends);
        async move {
            let mut body = req.into_body();
            let mut total = 0;
            let end = loop {
                match body.frame().await {
                    None => break Ok(total),
                    Some(Ok(frame)) => total += frame.data_ref().map_or(0, Bytes::len),
                    Some(Err(e)) => break Err(e.to_string()),
                }
            };
            ends.lock().expect("lock").push(end.clone());
            json_response(format!("{{\"received\":{}}}", end.unwrap_or(0)))
        }
    })
    .await
}

/// `chunks` frames of 1 MiB, `pause` apart; then, if `stall`, a body that never ends.
fn throttled(chunks: usize, pause: Duration, stall: bool) -> pagegate::Body {
    let block = Bytes::from(vec![b'u'; 1 << 20]);
    let frames = futures_util::stream::unfold(0, move |sent| {
        let block = block.clone();
        async move {
            if sent == chunks {
                if stall {
                    std::future::pending::<()>().await;
                }
                return None;
            }
            tokio::time::sleep(pause).await;
            let frame: Result<_, pagegate::BoxError> = Ok(http_body::Frame::data(block));
            Some((frame, sent + 1))
        }
    });
    StreamBody::new(frames).boxed()
}

#[tokio::test]
async fn an_upload_longer_than_the_response_timeout_arrives_whole_and_is_answered() {
    let ends = Arc::new(Mutex::new(Vec::new()));
    let upstream = counting(Arc::clone(&ends)).await;
    let proxy = Proxy::start(YAML, &upstream).await;
    // 64 MiB over about 1.3 s: four times the 300 ms response timeout, never idle 400 ms.
    let request = http::Request::post(proxy.url("/upload"))
        .body(throttled(64, Duration::from_millis(20), false))
        .expect("request");
    let got = send(request).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.json()["received"], 64 << 20);
    assert_eq!(*ends.lock().expect("lock"), [Ok(64 << 20)]);
    proxy.stop().await;
}

#[tokio::test]
async fn a_stalled_upload_gets_408_and_the_backend_sees_it_cut() {
    let ends = Arc::new(Mutex::new(Vec::new()));
    let upstream = counting(Arc::clone(&ends)).await;
    let proxy = Proxy::start(YAML, &upstream).await;
    let request = http::Request::post(proxy.url("/upload"))
        .body(throttled(2, Duration::from_millis(10), true))
        .expect("request");
    let got = send(request).await;
    let problem = got.problem(408);
    assert_eq!(problem["type"], "urn:pagegate:problem:request-body-stalled");
    // The backend's read of the body fails: the request was cut, not completed short.
    for _ in 0..50 {
        if !ends.lock().expect("lock").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ends = ends.lock().expect("lock").clone();
    assert!(matches!(ends.as_slice(), [Err(_)]), "{ends:?}");
    proxy.stop().await;
}

#[tokio::test]
async fn malformed_chunking_gets_400() {
    let ends = Arc::new(Mutex::new(Vec::new()));
    let upstream = counting(Arc::clone(&ends)).await;
    let proxy = Proxy::start(YAML, &upstream).await;
    let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nZZ\r\nabc\r\n0\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains("urn:pagegate:problem:malformed-request-body"),
        "{answer}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn an_upstream_that_stops_reading_an_upload_gets_a_504_not_a_hang() {
    // Reads nothing and never answers.
    let upstream = Upstream::start(|_| std::future::pending()).await;
    let proxy = Proxy::start(YAML, &upstream).await;
    let request = http::Request::post(proxy.url("/upload"))
        .body(throttled(64, Duration::from_millis(1), false))
        .expect("request");
    let got = tokio::time::timeout(Duration::from_secs(10), send(request))
        .await
        .expect("answered, not hung");
    let problem = got.problem(504);
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("read the request body")),
        "{problem}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_client_that_leaves_mid_upload_is_no_upstream_failure() {
    let ends = Arc::new(Mutex::new(Vec::new()));
    let upstream = counting(Arc::clone(&ends)).await;
    let yaml = format!("{YAML}admin: {{listen: '127.0.0.1:0'}}\n");
    let proxy = Proxy::start(&yaml, &upstream).await;
    let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nonly this")
        .await
        .expect("write");
    // Half-closed: the body ends at 9 bytes of 100,000; the answer can still be read.
    stream.shutdown().await.expect("shutdown");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains("urn:pagegate:problem:incomplete-request-body"),
        "{answer}"
    );
    let metrics = proxy.metrics_text().await;
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("pagegate_upstream_errors_total{") && !l.ends_with(" 0")),
        "{metrics}"
    );
    proxy.stop().await;
}
