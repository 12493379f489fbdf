//! pagegate's own HTTP/1.1 server path over in-memory sockets: which heads it reads and which
//! it hands to hyper (byte for byte), the heads it writes, and bodies framed, cut, awaited
//! and slowed by their client. The same path under the real server is tested in
//! `tests/it/server_http1.rs`.

use std::convert::Infallible;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;

use bytes::BytesMut;
use http::{HeaderValue, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::response::{BodyLen, Framing, encode};
use super::*;
use crate::body::scripted::{Scripted, Step};

// ----- request heads

#[test]
fn a_plain_get_is_read_and_only_its_head_taken_out() {
    let mut buf = BytesMut::from(
        &b"GET /events?limit=5 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nX-Two: 1\r\nx-two: 2\r\n\r\nGET /next"[..],
    );
    let head = request::parse(&mut buf).expect("read here");
    assert_eq!(head.request.method(), http::Method::GET);
    assert_eq!(head.request.uri(), "/events?limit=5");
    assert_eq!(head.request.version(), http::Version::HTTP_11);
    assert_eq!(head.request.headers()["host"], "a");
    let two: Vec<_> = head.request.headers().get_all("x-two").iter().collect();
    assert_eq!(two, ["1", "2"]);
    assert!(!head.close);
    assert_eq!(&buf[..], b"GET /next", "the next request's bytes stay");
}

#[test]
fn connection_close_is_heard_anywhere_in_its_list() {
    for (line, close) in [
        ("Connection: keep-alive, Close\r\n", true),
        ("Connection: close\r\n", true),
        ("Connection: keep-alive\r\n", false),
        ("Connection: closed\r\n", false),
    ] {
        let head = format!("HEAD / HTTP/1.1\r\nHost: a\r\n{line}\r\n");
        let parsed = request::parse(&mut BytesMut::from(head.as_bytes())).expect("read here");
        assert_eq!(parsed.close, close, "{line:?}");
        assert_eq!(parsed.request.method(), http::Method::HEAD);
    }
}

#[test]
fn heads_that_need_hyper_leave_the_buffer_as_it_was() {
    let many = format!(
        "GET / HTTP/1.1\r\n{}\r\n",
        "X: 1\r\n".repeat(request::MAX_FIELDS + 1)
    );
    let heads = [
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx",
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
        "GET / HTTP/1.1\r\ncOnTeNt-LeNgTh: 0\r\n\r\n",
        "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
        "GET /chat HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        "GET / HTTP/1.1\r\nConnection: keep-alive, upgrade\r\n\r\n",
        "GET / HTTP/1.1\r\nTE: trailers\r\n\r\n",
        "GET / HTTP/1.0\r\nHost: a\r\n\r\n",
        "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        "DELETE /x HTTP/1.1\r\nHost: a\r\n\r\n",
        "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n",
        "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
        "GET / HTTP/1.1\r\nBad Name: a\r\n\r\n",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        &many,
    ];
    let mut partial = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: a\r\n"[..]);
    assert_eq!(
        request::parse(&mut partial).err(),
        Some(request::NotHere::Partial)
    );
    for head in heads {
        let mut buf = BytesMut::from(head.as_bytes());
        assert!(request::parse(&mut buf).is_err(), "{head:?}");
        assert_eq!(&buf[..], head.as_bytes(), "{head:?}");
    }
}

#[test]
fn a_head_http_refuses_after_httparse_took_it_is_given_back_whole() {
    // httparse takes these; `http` does not (a target with a space cannot parse at all, so
    // these are found by trying): the bytes go back without a copy, for hyper to judge.
    let refused: Vec<String> = ["/a\"b", "/a{b", "/a|b", "/a\\b", "/a^b", "/a`b", "/a<b"]
        .iter()
        .map(|target| format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\n"))
        .filter(|head| {
            let mut fields = [httparse::EMPTY_HEADER; 4];
            let parsed = httparse::Request::new(&mut fields).parse(head.as_bytes());
            matches!(parsed, Ok(httparse::Status::Complete(_)))
                && http::Uri::try_from(&head[4..head.find(" HTTP").unwrap()]).is_err()
        })
        .collect();
    assert!(!refused.is_empty(), "no target to try the give-back with");
    for head in refused {
        let mut buf = BytesMut::from(head.as_bytes());
        assert!(request::parse(&mut buf).is_err(), "{head:?}");
        assert_eq!(&buf[..], head.as_bytes());
    }
}

// ----- answer heads

fn head(
    response: http::Response<()>,
    body: BodyLen,
    head_only: bool,
    close: bool,
) -> Result<(String, Framing, bool), &'static str> {
    let (parts, ()) = response.into_parts();
    let mut out = BytesMut::new();
    let (framing, close) = encode(&parts, body, head_only, close, &mut out)?;
    let text = String::from_utf8(out.to_vec()).expect("ascii");
    let date = text.find("date: ").expect("a date line");
    // The date is now's: replaced, to compare the rest.
    let text = format!("{}date: D{}", &text[..date], &text[date + 35..]);
    Ok((text, framing, close))
}

fn answer(status: u16, headers: &[(&'static str, &'static str)]) -> http::Response<()> {
    let mut response = http::Response::new(());
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    for (name, value) in headers {
        response
            .headers_mut()
            .append(*name, HeaderValue::from_static(value));
    }
    response
}

#[test]
fn a_known_length_is_the_bodys_own() {
    let ok = answer(
        200,
        &[("content-type", "text/plain"), ("content-length", "5")],
    );
    assert_eq!(
        head(ok, BodyLen::Known(5), false, false).unwrap(),
        (
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\ndate: D\r\n\r\n"
                .into(),
            Framing::Length(5),
            false
        )
    );
    let bare = head(answer(201, &[]), BodyLen::Known(7), false, false).unwrap();
    assert_eq!(
        bare.0,
        "HTTP/1.1 201 Created\r\ncontent-length: 7\r\ndate: D\r\n\r\n"
    );
    assert_eq!(bare.1, Framing::Length(7));
}

#[test]
fn an_unknown_length_is_the_answers_own_or_chunked() {
    let named = head(
        answer(200, &[("content-length", "12")]),
        BodyLen::Unknown,
        false,
        false,
    );
    assert_eq!(named.unwrap().1, Framing::Length(12));
    let (text, framing, _) = head(answer(200, &[]), BodyLen::Unknown, false, false).unwrap();
    assert_eq!(
        text,
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ndate: D\r\n\r\n"
    );
    assert_eq!(framing, Framing::Chunked);
    let coded = head(
        answer(200, &[("transfer-encoding", "gzip")]),
        BodyLen::Unknown,
        false,
        false,
    );
    let (text, framing, _) = coded.unwrap();
    assert!(
        text.contains("transfer-encoding: gzip\r\ntransfer-encoding: chunked\r\n"),
        "{text}"
    );
    assert_eq!(framing, Framing::Chunked);
}

#[test]
fn framing_an_answer_contradicts_is_refused() {
    let two = answer(200, &[("content-length", "1"), ("content-length", "2")]);
    assert!(head(two, BodyLen::Unknown, false, false).is_err());
    let both = answer(
        200,
        &[("transfer-encoding", "chunked"), ("content-length", "2")],
    );
    assert!(head(both, BodyLen::Unknown, false, false).is_err());
    let plus = answer(200, &[("content-length", "+2")]);
    assert!(head(plus, BodyLen::Unknown, false, false).is_err());
    assert!(head(answer(103, &[]), BodyLen::Empty, false, false).is_err());
}

#[test]
fn head_204_and_304_send_no_body() {
    let (text, framing, _) = head(
        answer(200, &[("content-length", "1234")]),
        BodyLen::Empty,
        true,
        false,
    )
    .unwrap();
    assert_eq!(
        text,
        "HTTP/1.1 200 OK\r\ncontent-length: 1234\r\ndate: D\r\n\r\n"
    );
    assert_eq!(framing, Framing::Length(0));
    let (text, framing, _) = head(answer(200, &[]), BodyLen::Known(9), true, false).unwrap();
    assert!(text.contains("content-length: 9\r\n"), "{text}");
    assert_eq!(framing, Framing::Length(0));
    // A 204 names no length and no coding, whatever its answer says.
    let framed = answer(
        204,
        &[("content-length", "3"), ("transfer-encoding", "chunked")],
    );
    let (text, framing, _) = head(framed, BodyLen::Known(3), false, false).unwrap();
    assert_eq!(text, "HTTP/1.1 204 No Content\r\ndate: D\r\n\r\n");
    assert_eq!(framing, Framing::Length(0));
    // A 304 sends no body and no coding; a length it names stands for its representation.
    let coded = answer(304, &[("transfer-encoding", "chunked")]);
    let (text, framing, _) = head(coded, BodyLen::Unknown, false, false).unwrap();
    assert_eq!(text, "HTTP/1.1 304 Not Modified\r\ndate: D\r\n\r\n");
    assert_eq!(framing, Framing::Length(0));
    let sized = head(
        answer(304, &[("content-length", "3")]),
        BodyLen::Known(3),
        false,
        false,
    );
    let (text, framing, _) = sized.unwrap();
    assert!(text.contains("content-length: 3\r\n"), "{text}");
    assert_eq!(framing, Framing::Length(0));
    for status in [204, 304] {
        let bare = head(answer(status, &[]), BodyLen::Known(3), false, false).unwrap();
        assert!(!bare.0.contains("content-length"), "{}", bare.0);
        assert_eq!(bare.1, Framing::Length(0));
    }
    let empty = head(answer(200, &[]), BodyLen::Empty, false, false).unwrap();
    assert!(empty.0.contains("content-length: 0\r\n"), "{}", empty.0);
}

#[test]
fn closing_is_said_once_and_an_answers_own_close_closes() {
    let (text, _, close) = head(answer(200, &[]), BodyLen::Empty, false, true).unwrap();
    assert!(close);
    assert_eq!(text.matches("connection: close").count(), 1, "{text}");
    let own = answer(200, &[("connection", "close")]);
    let (text, _, close) = head(own, BodyLen::Empty, false, false).unwrap();
    assert!(close);
    assert_eq!(text.matches("connection: close").count(), 1, "{text}");
}

#[test]
fn a_date_and_a_reason_of_the_answers_own_are_kept() {
    let dated = answer(200, &[("date", "Tue, 01 Dec 2026 00:00:00 GMT")]);
    let mut out = BytesMut::new();
    encode(
        &dated.into_parts().0,
        BodyLen::Empty,
        false,
        false,
        &mut out,
    )
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&out).matches("date: ").count(), 1);
    let mut own = answer(499, &[]);
    own.extensions_mut()
        .insert(hyper::ext::ReasonPhrase::from_static(
            b"Client Closed Request",
        ));
    let (text, ..) = head(own, BodyLen::Empty, false, false).unwrap();
    assert!(
        text.starts_with("HTTP/1.1 499 Client Closed Request\r\n"),
        "{text}"
    );
    let (text, ..) = head(answer(404, &[]), BodyLen::Empty, false, false).unwrap();
    assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"), "{text}");
}

// ----- connections

/// What the hand-off to hyper received: the bytes it read until the client closed, and
/// whether no request was served before.
type Handed = Arc<Mutex<Option<(Vec<u8>, bool)>>>;

/// Serves one in-memory connection: each request answered by `answer(path)`.
fn connection(
    answer: impl Fn(&str) -> crate::Response + Send + 'static,
    idle: Duration,
    socket_bytes: usize,
) -> (
    DuplexStream,
    tokio::task::JoinHandle<Result<(), BoxError>>,
    Arc<Graceful>,
    Handed,
) {
    let (client, server) = tokio::io::duplex(socket_bytes);
    let graceful = Arc::new(Graceful::default());
    let handed: Handed = Arc::default();
    let settings = Settings {
        idle,
        max_head: 64 * 1024,
    };
    let to_hyper = {
        let handed = Arc::clone(&handed);
        move |mut io: Prefixed<DuplexStream>, first| async move {
            let mut read = Vec::new();
            io.read_to_end(&mut read).await?;
            *handed.lock().unwrap() = Some((read, first));
            Ok(())
        }
    };
    let answering = move |request: Request| {
        std::future::ready(Ok::<_, Infallible>(answer(request.uri().path())))
    };
    let task = tokio::spawn(serve(
        server,
        settings,
        Arc::clone(&graceful),
        answering,
        to_hyper,
    ));
    (client, task, graceful, handed)
}

fn text(body: &'static str) -> crate::Response {
    http::Response::new(
        http_body_util::Full::new(Bytes::from_static(body.as_bytes()))
            .map_err(|e| match e {})
            .boxed(),
    )
}

fn scripted(steps: Vec<Step>) -> crate::Response {
    http::Response::new(Scripted::new(steps).map_err(BoxError::from).boxed())
}

/// Reads until `until` has been seen `times` times, within 2 s.
async fn read_until(client: &mut DuplexStream, until: &str, times: usize) -> String {
    let mut got = Vec::new();
    let reading = async {
        let mut chunk = [0u8; 4096];
        while String::from_utf8_lossy(&got).matches(until).count() < times {
            let n = client.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(2), reading)
        .await
        .expect("in time");
    String::from_utf8(got).expect("ascii")
}

const IDLE: Duration = Duration::from_secs(5);

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_then_a_post_goes_to_hyper_whole() {
    let (mut client, task, _, handed) = connection(
        |path| text(if path == "/a" { "first" } else { "second" }),
        IDLE,
        64 * 1024,
    );
    let post = b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc";
    let mut sent = b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n".to_vec();
    sent.extend_from_slice(post);
    client.write_all(&sent).await.unwrap();
    let got = read_until(&mut client, "second", 1).await;
    let first = got.find("first").expect("first answered");
    assert!(
        first < got.find("second").expect("second answered"),
        "{got}"
    );
    assert_eq!(got.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{got}");
    client.write_all(b"tail").await.unwrap();
    client.shutdown().await.unwrap();
    task.await.unwrap().unwrap();
    let handed = handed.lock().unwrap().take().expect("handed to hyper");
    assert_eq!(
        handed,
        ([&post[..], b"tail"].concat(), false),
        "hyper reads the POST from its first byte, as HTTP/1 only"
    );
}

#[tokio::test]
async fn an_http2_preface_goes_to_hyper_from_the_first_byte() {
    let (mut client, task, _, handed) = connection(|_| text("no"), IDLE, 64 * 1024);
    client
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    client.shutdown().await.unwrap();
    task.await.unwrap().unwrap();
    let handed = handed.lock().unwrap().take();
    assert_eq!(
        handed,
        Some((b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), true))
    );
}

#[tokio::test]
async fn a_preface_after_a_request_goes_to_hyper_as_http1() {
    let (mut client, task, _, handed) = connection(|_| text("ok"), IDLE, 64 * 1024);
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    read_until(&mut client, "ok", 1).await;
    client
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    client.shutdown().await.unwrap();
    task.await.unwrap().unwrap();
    let (bytes, first) = handed.lock().unwrap().take().expect("handed");
    assert_eq!(bytes, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    assert!(!first, "HTTP/2 may begin only with the connection");
}

#[tokio::test]
async fn a_head_arriving_in_pieces_is_read_here_within_the_idle_limit() {
    let (mut client, task, _, handed) =
        connection(|_| text("ok"), Duration::from_millis(300), 1024);
    client.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    client.write_all(b"st: a\r\n\r\n").await.unwrap();
    read_until(&mut client, "ok", 1).await;
    // The next head's first byte, then nothing: closed when its wait is over, not handed on
    // (hyper's timer would start again).
    client.write_all(b"G").await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(2), task).await;
    closed.expect("closed at the idle limit").unwrap().unwrap();
    assert!(handed.lock().unwrap().is_none());
}

#[tokio::test]
async fn a_body_past_its_length_is_cut_at_it_and_the_connection_closed() {
    let (mut client, task, _, _) = connection(
        |_| {
            let mut long = scripted(vec![Step::Data("12345"), Step::Data("6789")]);
            long.headers_mut()
                .insert("content-length", HeaderValue::from_static("6"));
            long
        },
        IDLE,
        64 * 1024,
    );
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut got = String::new();
    client.read_to_string(&mut got).await.unwrap();
    assert!(got.ends_with("\r\n\r\n123456"), "{got}");
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_body_short_of_its_length_fails_the_connection() {
    let (mut client, task, _, _) = connection(
        |_| {
            let mut short = scripted(vec![Step::Data("12")]);
            short
                .headers_mut()
                .insert("content-length", HeaderValue::from_static("6"));
            short
        },
        IDLE,
        64 * 1024,
    );
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut got = String::new();
    client.read_to_string(&mut got).await.unwrap();
    assert!(got.ends_with("\r\n\r\n12"), "{got}");
    let error = task.await.unwrap().expect_err("a short body is an error");
    assert!(error.to_string().contains("4 bytes short"), "{error}");
}

#[tokio::test]
async fn a_body_of_unknown_length_is_chunked_across_pauses_without_its_trailers() {
    let (mut client, task, _, _) = connection(
        |_| {
            scripted(vec![
                Step::Data("hello"),
                Step::Wait(Duration::from_millis(20)),
                Step::Data(""),
                Step::Data(" world"),
                Step::Trailers,
            ])
        },
        IDLE,
        64 * 1024,
    );
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let got = read_until(&mut client, "0\r\n\r\n", 1).await;
    assert!(got.contains("transfer-encoding: chunked\r\n"), "{got}");
    assert!(
        got.ends_with("\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
        "{got}"
    );
    assert!(!got.contains("x-checksum"), "{got}");
    drop(client);
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_large_frame_is_written_whole_behind_its_head_and_chunk_line() {
    static LARGE: std::sync::LazyLock<Bytes> =
        std::sync::LazyLock::new(|| Bytes::from(vec![b'x'; 100_000]));
    let (mut client, task, _, _) = connection(
        |_| scripted(vec![Step::Bytes(LARGE.clone()), Step::Data("!")]),
        IDLE,
        4 * 1024,
    );
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let got = read_until(&mut client, "0\r\n\r\n", 1).await;
    let body = &got[got.find("\r\n\r\n").unwrap() + 4..];
    assert_eq!(
        body,
        format!("186a0\r\n{}\r\n1\r\n!\r\n0\r\n\r\n", "x".repeat(100_000))
    );
    drop(client);
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_client_that_reads_nothing_is_asked_for_no_more_than_the_socket_holds() {
    static ASKED: AtomicUsize = AtomicUsize::new(0);
    let (mut client, task, _, _) = connection(
        |_| {
            let frames = (0..1000).map(|_| {
                ASKED.fetch_add(1, Ordering::Relaxed);
                Ok::<_, BoxError>(http_body::Frame::data(Bytes::from(vec![b'y'; 1024])))
            });
            let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
            http::Response::new(body.boxed())
        },
        IDLE,
        8 * 1024,
    );
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let asked = ASKED.load(Ordering::Relaxed);
    // What one write gathers, and what the socket holds, in 1 KiB frames; one more asked.
    let bound = (send::GATHER + 8 * 1024) / 1024 + 2;
    assert!(
        asked <= bound,
        "{asked} frames of 1 KiB asked for an 8 KiB socket"
    );
    let got = read_until(&mut client, "0\r\n\r\n", 1).await;
    assert_eq!(got.matches('y').count(), 1000 * 1024);
    assert_eq!(ASKED.load(Ordering::Relaxed), 1000);
    drop(client);
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_client_that_leaves_while_waiting_cancels_its_request() {
    let dropped = Arc::new(AtomicBool::new(false));
    let (client, server) = tokio::io::duplex(1024);
    let settings = Settings {
        idle: IDLE,
        max_head: 64 * 1024,
    };
    let seen = Arc::clone(&dropped);
    let answering = move |_: Request| {
        let guard = scopeguard(Arc::clone(&seen));
        async move {
            std::future::pending::<()>().await;
            drop(guard);
            Ok::<crate::Response, Infallible>(text(""))
        }
    };
    let to_hyper = |_: Prefixed<DuplexStream>, _| async { Ok(()) };
    let task = tokio::spawn(serve(server, settings, Arc::default(), answering, to_hyper));
    let mut client = client;
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!dropped.load(Ordering::Relaxed));
    client.shutdown().await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("ended")
        .unwrap()
        .unwrap();
    assert!(
        dropped.load(Ordering::Relaxed),
        "the waiting request was dropped"
    );
}

/// Sets its flag when dropped.
struct Flag(Arc<AtomicBool>);

impl Drop for Flag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn scopeguard(flag: Arc<AtomicBool>) -> Flag {
    Flag(flag)
}

#[tokio::test]
async fn an_idle_connection_closes_after_its_idle_time_but_not_before_its_first_request() {
    let (mut client, task, _, _) = connection(|_| text("ok"), Duration::from_millis(100), 1024);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !task.is_finished(),
        "the first wait is the socket's own deadline's"
    );
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    read_until(&mut client, "ok", 1).await;
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("idled out")
        .unwrap()
        .unwrap();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
}

#[tokio::test]
async fn a_graceful_close_ends_an_idle_connection_and_a_busy_one_after_its_answer() {
    let (mut client, task, graceful, _) = connection(|_| text("ok"), IDLE, 1024);
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    read_until(&mut client, "ok", 1).await;
    graceful.ask();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("closed")
        .unwrap()
        .unwrap();

    let (mut client, task, graceful, _) = connection(
        |_| {
            scripted(vec![
                Step::Wait(Duration::from_millis(100)),
                Step::Data("late"),
            ])
        },
        IDLE,
        1024,
    );
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    graceful.ask();
    let mut got = String::new();
    client.read_to_string(&mut got).await.unwrap();
    assert!(got.ends_with("late\r\n0\r\n\r\n"), "{got}");
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_body_longer_than_its_named_length_is_not_read_on() {
    // Endless, with a length: after 6 bytes the answer is whole and the body let go.
    let (mut client, task, _, _) = connection(
        |path| {
            if path == "/next" {
                return text("next");
            }
            let frames = futures_util::stream::repeat_with(|| {
                Ok::<_, BoxError>(http_body::Frame::data(Bytes::from_static(b"abc")))
            });
            let mut endless = http::Response::new(http_body_util::StreamBody::new(frames).boxed());
            endless
                .headers_mut()
                .insert("content-length", HeaderValue::from_static("6"));
            endless
        },
        IDLE,
        64 * 1024,
    );
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let got = read_until(&mut client, "next", 1).await;
    assert!(got.contains("content-length: 6\r\n"), "{got}");
    assert!(got.contains("\r\n\r\nabcabcHTTP/1.1 200 OK\r\n"), "{got}");
    drop(client);
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_known_length_wins_over_a_header_that_disagrees() {
    let (mut client, task, _, _) = connection(
        |_| {
            let mut wrong = text("hello");
            wrong
                .headers_mut()
                .insert("content-length", HeaderValue::from_static("99"));
            wrong
        },
        IDLE,
        1024,
    );
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let got = read_until(&mut client, "hello", 1).await;
    assert!(got.contains("content-length: 5\r\n"), "{got}");
    drop(client);
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_answer_http1_cannot_carry_becomes_a_500_and_a_close() {
    let (mut client, task, _, _) = connection(
        |_| {
            let mut early = text("");
            *early.status_mut() = StatusCode::EARLY_HINTS;
            early
        },
        IDLE,
        1024,
    );
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut got = String::new();
    client.read_to_string(&mut got).await.unwrap();
    assert!(
        got.starts_with("HTTP/1.1 500 Internal Server Error\r\n"),
        "{got}"
    );
    assert!(got.contains("connection: close\r\n"), "{got}");
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_idle_limit_counts_each_wait_on_its_own() {
    let (mut client, task, _, _) = connection(|_| text("ok"), Duration::from_millis(200), 1024);
    for _ in 0..3 {
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        read_until(&mut client, "ok", 1).await;
        // 150 ms a wait, 450 ms in all: more than the limit, but never at once.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(
        !task.is_finished(),
        "closed though no wait was over the limit"
    );
    let closed = tokio::time::timeout(Duration::from_secs(2), task).await;
    closed
        .expect("closed after a wait over the limit")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_close_asked_while_answering_says_so_and_starts_no_buffered_request() {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let graceful = Arc::new(Graceful::default());
    let answering = |request: Request| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok::<_, Infallible>(text(if request.uri().path() == "/a" {
            "first"
        } else {
            "second"
        }))
    };
    let to_hyper = |_: Prefixed<DuplexStream>, _| async { Ok(()) };
    let settings = Settings {
        idle: IDLE,
        max_head: 64 * 1024,
    };
    let task = tokio::spawn(serve(
        server,
        settings,
        Arc::clone(&graceful),
        answering,
        to_hyper,
    ));
    let mut client = client;
    client
        .write_all(b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    graceful.ask();
    let mut got = String::new();
    client.read_to_string(&mut got).await.unwrap();
    assert!(got.contains("\r\nconnection: close\r\n"), "{got}");
    assert!(got.ends_with("first"), "{got}");
    assert!(!got.contains("second"), "{got}");
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_head_over_a_read_buffer_arriving_in_pieces_is_read_here() {
    let (mut client, task, _, handed) =
        connection(|_| text("ok"), Duration::from_secs(2), 64 * 1024);
    let long = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(10 * 1024));
    client.write_all(long.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    client.write_all(b"\r\n\r\n").await.unwrap();
    read_until(&mut client, "ok", 1).await;
    drop(client);
    task.await.unwrap().unwrap();
    assert!(
        handed.lock().unwrap().is_none(),
        "a head still arriving is not handed on"
    );
}

#[tokio::test]
async fn too_many_fields_still_arriving_are_held_to_the_idle_limit_not_handed_on() {
    let (mut client, task, _, handed) =
        connection(|_| text("ok"), Duration::from_millis(200), 1024);
    let fields = "X: 1\r\n".repeat(request::MAX_FIELDS + 5);
    client
        .write_all(format!("GET / HTTP/1.1\r\n{fields}").as_bytes())
        .await
        .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(2), task).await;
    closed.expect("closed at the idle limit").unwrap().unwrap();
    assert!(
        handed.lock().unwrap().is_none(),
        "hyper's timer would start again"
    );
}

#[tokio::test]
async fn small_frames_never_grow_the_connections_write_buffer() {
    // 100 frames of 1 KB, each copied behind the last: more than one buffer holds.
    let frame = Bytes::from(vec![b'x'; 1000]);
    let steps = (0..100).map(|_| Step::Bytes(frame.clone())).collect();
    let (mut client, mut server) = tokio::io::duplex(1 << 20);
    let (mut buf, mut out) = (BytesMut::new(), BytesMut::new());
    let answer = scripted(steps);
    let kept = respond(&mut server, (&mut buf, &mut out), answer, false, false).await;
    assert!(kept.expect("sent"));
    let got = read_until(&mut client, "0\r\n\r\n", 1).await;
    assert_eq!(got.matches(&"x".repeat(1000)).count(), 100);
    // What the connection keeps for its next answer: one buffer of the first size.
    out.clear();
    out.reserve(READ_BUFFER);
    assert!(out.capacity() <= 2 * READ_BUFFER, "{}", out.capacity());
}
