//! pagegate's own HTTP/1.1 path for bodiless `GET` and `HEAD` (src/upstream/pool/wire.rs), seen
//! from scripted backends that write raw bytes: each framing read exactly, every answer a
//! smuggler or a broken backend could write refused with a 502, and a connection reused only
//! when nothing of another answer can be on it.

use std::time::Duration;

use http_body_util::BodyExt;

use crate::support::raw::{Scripted, Step};
use crate::support::{Proxy, get, get_head, head};

const YAML: &str = "
default: {action: pass, upstream: app}
upstreams:
  app: {url: '{upstream}', pool_idle_timeout: 30s}
";

/// A scripted backend and a proxy in front of it.
async fn answering(script: fn(usize, usize) -> Vec<Step>) -> (Scripted, Proxy) {
    let backend = Scripted::start(script).await;
    let proxy = Proxy::start_url(YAML, &backend.url()).await;
    (backend, proxy)
}

#[tokio::test]
async fn each_framing_is_read_exactly_and_the_connection_reused() {
    let (backend, proxy) = answering(|_, r| {
        vec![Step::Write(match r {
            0 => b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\nhello",
            // Chunked, with an extension, split sizes and a trailer.
            1 => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n3;name=\"x\"\r\nhel\r\n2\r\nlo\r\n0\r\nX-Sum: 5\r\n\r\n",
            // Two informational answers before the real one.
            2 => b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            // 204 and 304 have no body whatever their head says.
            3 => b"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n",
            4 => b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
            // The answer to the HEAD below: a length, no body.
            6 => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            _ => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        })]
    })
    .await;
    for (i, want) in [
        (0, "hello"),
        (1, "hello"),
        (2, "hello"),
        (3, ""),
        (4, ""),
        (5, "hello"),
    ] {
        let got = get(&proxy.url("/")).await;
        assert_eq!(got.text(), want, "answer {i}");
        let status = [200, 200, 200, 204, 304, 200][i];
        assert_eq!(got.status.as_u16(), status, "answer {i}");
    }
    assert_eq!(backend.opened(), 1, "one connection for every answer");
    // A HEAD answer's length is not followed by a body.
    assert_eq!(head(&proxy.url("/")).await.status, 200);
    assert_eq!(get(&proxy.url("/")).await.text(), "hello");
    assert_eq!(backend.opened(), 1, "HEAD kept the connection too");
}

#[tokio::test]
async fn a_body_sent_to_a_head_is_not_read_as_the_next_answer() {
    let (backend, proxy) = answering(|_, _| {
        vec![Step::Write(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        )]
    })
    .await;
    assert_eq!(head(&proxy.url("/")).await.status, 200);
    assert_eq!(get(&proxy.url("/")).await.text(), "hello");
    assert_eq!(backend.opened(), 2, "the HEAD's connection was not reused");
}

#[tokio::test]
async fn a_bodiless_answers_length_is_read_as_strictly_as_one_that_frames() {
    // Scripted by connection: a malformed head closes its connection.
    let (backend, proxy) = answering(|c, _| match c {
        0 => vec![Step::Write(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5, 7\r\n\r\n",
        )],
        1 => vec![Step::Write(
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: abc\r\n\r\n",
        )],
        _ => vec![Step::Write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")],
    })
    .await;
    // Each malformed head closes its connection: every request opens its own.
    assert_eq!(head(&proxy.url("/")).await.status, 502);
    assert_eq!(get(&proxy.url("/")).await.status, 502);
    let good = head(&proxy.url("/")).await;
    assert_eq!(good.status, 200);
    assert_eq!(good.header("content-length"), Some("5"));
    assert_eq!(backend.opened(), 3);
}

#[tokio::test]
async fn a_body_without_framing_runs_to_the_close_and_is_not_reused() {
    let (backend, proxy) = answering(|_, _| {
        vec![
            Step::Write(b"HTTP/1.1 200 OK\r\n\r\nall of "),
            Step::Wait(50),
            Step::Write(b"it"),
            Step::Close,
        ]
    })
    .await;
    assert_eq!(get(&proxy.url("/")).await.text(), "all of it");
    assert_eq!(get(&proxy.url("/")).await.text(), "all of it");
    assert_eq!(backend.opened(), 2);
}

#[tokio::test]
async fn a_reason_of_the_backend_s_own_is_relayed() {
    let (_backend, proxy) = answering(|_, _| {
        vec![Step::Write(
            b"HTTP/1.1 499 Client Closed Request\r\nContent-Length: 0\r\n\r\n",
        )]
    })
    .await;
    let answer = get_head(&proxy.url("/")).await;
    assert_eq!(answer.status(), 499);
    let reason = answer.extensions().get::<hyper::ext::ReasonPhrase>();
    assert_eq!(
        reason.map(hyper::ext::ReasonPhrase::as_bytes),
        Some(&b"Client Closed Request"[..])
    );
}

#[tokio::test]
async fn answers_a_smuggler_or_a_broken_backend_writes_are_502s() {
    // (Transfer-Encoding with Content-Length is read chunked: targets.rs.)
    let heads: [&'static [u8]; 9] = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello",
        b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 2000 OK\r\nContent-Length: 5\r\n\r\nhello",
    ];
    for (i, head) in heads.into_iter().enumerate() {
        let url = crate::support::raw::raw_upstream(head).await;
        let yaml = format!("admin: {{listen: 127.0.0.1:0}}\n{YAML}");
        let proxy = Proxy::start_url(&yaml, &url).await;
        let problem = get(&proxy.url("/")).await.problem(502);
        assert_eq!(
            problem["type"], "urn:pagegate:problem:upstream-unavailable",
            "head {i}"
        );
        // hyper's client reads what it sends (a POST): a coding it does not undo is refused
        // the same way.
        if i == 1 {
            let post = http::Request::post(proxy.url("/"))
                .body(crate::support::full(bytes::Bytes::new()))
                .expect("post");
            crate::support::send(post).await.problem(502);
        }
        // Told apart from a connection that closed, for whoever reads the metrics.
        let counted = format!(
            "pagegate_upstream_errors_total{{upstream=\"app\",cause=\"malformed_answer\"}} {}",
            if i == 1 { 2 } else { 1 }
        );
        let metrics = proxy.metrics_text().await;
        assert!(metrics.contains(&counted), "head {i}: {counted} missing");
        proxy.stop().await;
    }
}

#[tokio::test]
async fn a_head_past_the_limit_is_a_502() {
    let (_backend, proxy) = answering(|_, _| {
        // 60 fields of 8 KB: under the field count, past the bytes.
        let field = format!("X-Big: {}\r\n", "a".repeat(8000));
        let field: &'static [u8] = Box::leak(field.into_bytes().into_boxed_slice());
        let mut steps = vec![Step::Write(b"HTTP/1.1 200 OK\r\n")];
        steps.extend(std::iter::repeat_n(Step::Write(field), 60));
        steps.push(Step::Write(b"Content-Length: 0\r\n\r\n"));
        steps
    })
    .await;
    get(&proxy.url("/")).await.problem(502);
}

#[tokio::test]
async fn a_body_cut_short_fails_the_client_s_download() {
    let (_backend, proxy) = answering(|c, _| match c {
        0 => vec![
            Step::Write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello"),
            Step::Close,
        ],
        1 => vec![
            Step::Write(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
            ),
            Step::Close,
        ],
        2 => vec![
            Step::Write(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n",
            ),
            Step::Close,
        ],
        // An empty line where a size should be: not the last chunk (httparse alone reads 0).
        _ => vec![
            Step::Write(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n\r\n\r\n",
            ),
            Step::Close,
        ],
    })
    .await;
    let cases = [
        "length",
        "chunk size",
        "chunk longer than its size",
        "empty size",
    ];
    for case in cases {
        let answer = get_head(&proxy.url("/")).await;
        assert_eq!(answer.status(), 200, "{case}");
        assert!(
            answer.into_body().collect().await.is_err(),
            "{case}: the client must see the body fail, not end"
        );
    }
}

#[tokio::test]
async fn bytes_after_an_answer_are_never_read_as_the_next_one() {
    let (backend, proxy) = answering(|c, _| match c {
        // Extra bytes in the same write, then a whole stray answer a moment later.
        0 => vec![Step::Write(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\n",
        )],
        1 => vec![
            Step::Write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
            Step::Wait(50),
            Step::Write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil"),
        ],
        _ => vec![Step::Write(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nworld",
        )],
    })
    .await;
    assert_eq!(get(&proxy.url("/")).await.text(), "hello");
    assert_eq!(get(&proxy.url("/")).await.text(), "hello");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(get(&proxy.url("/")).await.text(), "world");
    assert_eq!(backend.opened(), 3, "neither connection was reused");
}

#[tokio::test]
async fn a_reused_connection_closed_before_answering_is_retried_on_a_new_one() {
    let (backend, proxy) = answering(|c, r| match (c, r) {
        // The first connection answers once, then closes on the next request unanswered,
        // as a backend whose keep-alive timer fired as the request arrived.
        (0, 0) => vec![Step::Write(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        )],
        (0, _) => vec![Step::Close],
        _ => vec![Step::Write(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nagain",
        )],
    })
    .await;
    assert_eq!(get(&proxy.url("/")).await.text(), "hello");
    assert_eq!(get(&proxy.url("/")).await.text(), "again");
    assert_eq!(backend.opened(), 2);
    // A new connection that fails is not retried: the client is told.
    let (backend, proxy) = answering(|_, _| vec![Step::Close]).await;
    get(&proxy.url("/")).await.problem(502);
    assert_eq!(backend.opened(), 1);
}

#[tokio::test]
async fn a_connection_the_backend_ends_is_not_pooled() {
    let (backend, proxy) = answering(|_, _| {
        vec![Step::Write(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello",
        )]
    })
    .await;
    assert_eq!(get(&proxy.url("/")).await.text(), "hello");
    assert_eq!(get(&proxy.url("/")).await.text(), "hello");
    assert_eq!(backend.opened(), 2, "Connection: close was honoured");
    // HTTP/1.0 keeps a connection only when it says so.
    let (backend, proxy) = answering(|_, _| {
        vec![Step::Write(
            b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        )]
    })
    .await;
    assert_eq!(get(&proxy.url("/")).await.text(), "hello");
    assert_eq!(get(&proxy.url("/")).await.text(), "hello");
    assert_eq!(backend.opened(), 2, "HTTP/1.0 without keep-alive");
}

#[tokio::test]
async fn an_answer_begun_is_never_retried() {
    // Cut inside its head, or after an informational answer: the backend has the request.
    let heads: [&'static [u8]; 2] = [b"HTTP/1.1 20", b"HTTP/1.1 103 Early Hints\r\n\r\n"];
    for (i, begun) in heads.into_iter().enumerate() {
        let script: fn(usize, usize) -> Vec<Step> = match i {
            0 => |_, r| match r {
                0 => vec![Step::Write(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                )],
                _ => vec![Step::Write(b"HTTP/1.1 20"), Step::Close],
            },
            _ => |_, r| match r {
                0 => vec![Step::Write(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                )],
                _ => vec![
                    Step::Write(b"HTTP/1.1 103 Early Hints\r\n\r\n"),
                    Step::Close,
                ],
            },
        };
        let (backend, proxy) = answering(script).await;
        assert_eq!(get(&proxy.url("/")).await.text(), "ok");
        get(&proxy.url("/")).await.problem(502);
        assert_eq!(
            backend.opened(),
            1,
            "{:?} was retried",
            String::from_utf8_lossy(begun)
        );
    }
}

#[tokio::test]
async fn an_answer_framed_twice_closes_its_connection() {
    let (backend, proxy) = answering(|_, _| {
        vec![Step::Write(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        )]
    })
    .await;
    for _ in 0..2 {
        let got = get(&proxy.url("/")).await;
        assert_eq!(got.text(), "hello");
        assert_eq!(got.header("content-length"), None);
    }
    assert_eq!(backend.opened(), 2, "the connection was not reused");
    // Through hyper's client (a request it sends), the same.
    for _ in 0..2 {
        let post = http::Request::post(proxy.url("/"))
            .body(crate::support::full(bytes::Bytes::new()))
            .expect("post");
        let got = crate::support::send(post).await;
        assert_eq!(got.text(), "hello");
    }
    assert_eq!(backend.opened(), 4, "nor through hyper's client");
}

#[tokio::test]
async fn chunk_lines_and_trailers_are_read_within_their_limits() {
    // A size line split across two writes is waited for.
    let (_backend, proxy) = answering(|_, _| {
        vec![
            Step::Write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5"),
            Step::Wait(30),
            Step::Write(b";x=1\r\nhello\r\n0\r\n\r\n"),
        ]
    })
    .await;
    assert_eq!(get(&proxy.url("/")).await.text(), "hello");
    // A size line past 4 KiB, trailers past 16 KiB (each in one write): the download fails.
    let scripts: [fn(usize, usize) -> Vec<Step>; 2] = [
        |_, _| oversized(format!("5;{}\r\nhello\r\n0\r\n\r\n", "x".repeat(5000))),
        |_, _| {
            oversized(format!(
                "5\r\nhello\r\n0\r\nX-Big: {}\r\n\r\n",
                "a".repeat(17_000)
            ))
        },
    ];
    for (case, script) in ["size line", "trailers"].into_iter().zip(scripts) {
        let (_backend, proxy) = answering(script).await;
        let answer = get_head(&proxy.url("/")).await;
        assert_eq!(answer.status(), 200, "{case}");
        assert!(answer.into_body().collect().await.is_err(), "{case}");
    }
}

/// A chunked answer whose body is `chunks`, then the connection's close.
fn oversized(chunks: String) -> Vec<Step> {
    let chunks: &'static [u8] = Box::leak(chunks.into_bytes().into_boxed_slice());
    vec![
        Step::Write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
        Step::Write(chunks),
        Step::Close,
    ]
}

#[tokio::test]
async fn a_connection_the_backend_ended_while_idle_is_not_written_to() {
    // The backend ends its side after its answer but would still read: a request written to
    // that connection would reach it (and go unanswered).
    let (backend, proxy) = answering(|_, _| {
        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        vec![Step::Write(answer), Step::Wait(50), Step::HalfClose]
    })
    .await;
    assert_eq!(get(&proxy.url("/")).await.text(), "hello");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get(&proxy.url("/")).await.text(), "hello");
    assert_eq!(
        (backend.opened(), backend.heads()),
        (2, 2),
        "the ended connection was seen ended at checkout"
    );
}
