//! pagegate's own HTTP/1.1 server path (src/server/http1.rs) under the real server, from raw
//! client sockets: keep-alive and pipelined requests answered in order, the hand-off to
//! hyper mid-connection and mid-head losing no byte, `Connection: close`, `HEAD`, and a
//! client that leaves cancelling its request at the backend.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Proxy, Upstream, full};

const YAML: &str = "
default: {action: pass, upstream: app}
upstreams:
  app: {url: '{upstream}'}
";

/// A backend answering each request with its path, or a POST with its body.
async fn echo() -> Upstream {
    Upstream::start(|req: http::Request<hyper::body::Incoming>| async move {
        let path = req.uri().path().to_owned();
        let body = req.into_body().collect().await.expect("body").to_bytes();
        let answer = if body.is_empty() {
            path.into_bytes().into()
        } else {
            body
        };
        http::Response::new(full(answer))
    })
    .await
}

/// Reads from `stream` until `text` has arrived, within 2 s; everything read.
async fn read_until(stream: &mut TcpStream, text: &str) -> String {
    let mut got = Vec::new();
    let reading = async {
        let mut chunk = [0u8; 4096];
        while !String::from_utf8_lossy(&got).contains(text) {
            let n = stream.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(2), reading)
        .await
        .unwrap_or_else(|_| panic!("no {text:?} in {:?}", String::from_utf8_lossy(&got)));
    String::from_utf8(got).expect("ascii")
}

#[tokio::test]
async fn pipelined_gets_and_a_post_among_them_are_answered_in_order() {
    let backend = echo().await;
    let proxy = Proxy::start(YAML, &backend).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    // Two GETs for this path, then a POST hyper reads from its first byte, then a GET.
    client
        .write_all(
            b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n\
              POST /c HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello\
              GET /d HTTP/1.1\r\nHost: a\r\n\r\n",
        )
        .await
        .unwrap();
    let got = read_until(&mut client, "\r\n\r\n/d").await;
    let at = |body: &str| {
        got.find(&format!("\r\n\r\n{body}"))
            .unwrap_or_else(|| panic!("{body} in {got}"))
    };
    assert!(
        at("/a") < at("/b") && at("/b") < at("hello") && at("hello") < at("/d"),
        "{got}"
    );
    assert_eq!(got.matches("HTTP/1.1 200 OK\r\n").count(), 4, "{got}");
    let methods: Vec<_> = backend
        .seen()
        .iter()
        .map(|seen| seen.method.clone())
        .collect();
    assert_eq!(methods, ["GET", "GET", "POST", "GET"]);
}

#[tokio::test]
async fn a_head_split_across_writes_is_answered_and_the_connection_kept() {
    let backend = echo().await;
    let proxy = Proxy::start(YAML, &backend).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(b"GET /first HTTP/1.1\r\nHo")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    client.write_all(b"st: a\r\n\r\n").await.unwrap();
    read_until(&mut client, "\r\n\r\n/first").await;
    client
        .write_all(b"GET /second HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    read_until(&mut client, "\r\n\r\n/second").await;
}

#[tokio::test]
async fn connection_close_is_answered_then_the_connection_closes() {
    let backend = echo().await;
    let proxy = Proxy::start(YAML, &backend).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(b"GET /bye HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut got = String::new();
    tokio::time::timeout(Duration::from_secs(2), client.read_to_string(&mut got))
        .await
        .expect("closed after the answer")
        .unwrap();
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    assert!(got.contains("\r\nconnection: close\r\n"), "{got}");
    assert!(got.ends_with("\r\n\r\n/bye"), "{got}");
}

#[tokio::test]
async fn a_head_answer_names_the_length_and_sends_no_body() {
    let backend = echo().await;
    let proxy = Proxy::start(YAML, &backend).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    // A body after the HEAD's head would be read as the GET's answer.
    client
        .write_all(b"HEAD /12345 HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let got = read_until(&mut client, "\r\n\r\n/next").await;
    let (head, rest) = got.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("\r\ncontent-length: 6\r\n"), "{head}");
    assert!(rest.starts_with("HTTP/1.1 200 OK\r\n"), "{rest}");
}

#[tokio::test]
async fn after_a_request_the_connection_stays_http1_and_a_stalled_head_times_out() {
    let backend = echo().await;
    let proxy = Proxy::start(&format!("header_read_timeout: 300ms\n{YAML}"), &backend).await;
    // An HTTP/2 preface after a request is a bad HTTP/1 head, as hyper's own connection reads
    // it: closed, with no answer (hyper answers a preface with none).
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    read_until(&mut client, "\r\n\r\n/a").await;
    client
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    let mut rest = String::new();
    tokio::time::timeout(Duration::from_secs(2), client.read_to_string(&mut rest))
        .await
        .expect("closed")
        .unwrap();
    assert_eq!(rest, "", "no answer to a preface mid-connection");
    // One byte of a next head, then nothing: closed within the head's time.
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(b"GET /b HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    read_until(&mut client, "\r\n\r\n/b").await;
    client.write_all(b"G").await.unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), client.read_to_end(&mut rest))
        .await
        .expect("closed")
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_client_that_leaves_cancels_its_request_at_the_backend() {
    let dropped = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&dropped);
    let backend = Upstream::start(move |_| {
        let guard = Flag(Arc::clone(&seen));
        async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(guard);
            http::Response::new(full("late"))
        }
    })
    .await;
    let proxy = Proxy::start(YAML, &backend).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !dropped.load(Ordering::Relaxed),
        "the backend is still working"
    );
    drop(client);
    let cancelled = async {
        while !dropped.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(2), cancelled)
        .await
        .expect("the backend's request was cancelled");
}

/// Sets its flag when dropped.
struct Flag(Arc<AtomicBool>);

impl Drop for Flag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[tokio::test]
async fn a_backends_http1_0_answer_reaches_the_client_as_http1_1_chunked_and_kept_alive() {
    // An HTTP/1.0 answer without a length ends with its connection; pagegate speaks its own
    // version to its client (RFC 9110 §6.2): chunked, the client's connection kept.
    let backend =
        crate::support::raw::raw_upstream(b"HTTP/1.0 200 OK\r\nX-Old: 1\r\n\r\nhello").await;
    let proxy = Proxy::start_url(YAML, &backend).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    for _ in 0..2 {
        client
            .write_all(b"GET /old HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let got = read_until(&mut client, "0\r\n\r\n").await;
        assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
        assert!(got.contains("\r\ntransfer-encoding: chunked\r\n"), "{got}");
        assert!(got.ends_with("\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), "{got}");
    }
}
