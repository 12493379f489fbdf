//! The per-connection accounting with scripted bodies: frames cut for HTTP/2, exact sizes kept,
//! trailers passed, cancels counted only where a client cancelled, idle eviction order (the rules: `eviction`).

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http_body_util::{BodyExt, Empty, Full, StreamBody};

use http_body::{Body as _, Frame};

use super::*;

fn connections(max_resets: u32) -> Arc<Connections> {
    Connections::new(
        Settings {
            http2_idle_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(30),
            http2_max_resets: max_resets,
        },
        Closed::default(),
    )
}

fn resets(connections: &Connections) -> u64 {
    connections.closed.http2_resets.get()
}

#[tokio::test]
async fn http2_frames_are_cut_to_the_frame_size_and_keep_their_exact_length() {
    let open = connections(10);
    let conn = open.open();
    let body = conn
        .0
        .stream(true)
        .body(Full::new(Bytes::from(vec![7u8; 40_000])));
    assert_eq!(body.size_hint().exact(), Some(40_000));
    let mut body = Box::pin(body);
    let mut sizes = Vec::new();
    while let Some(frame) = body.frame().await {
        sizes.push(frame.expect("frame").into_data().expect("data").len());
        if let Some(rest) = body.size_hint().exact() {
            assert_eq!(rest, 40_000 - sizes.iter().sum::<usize>() as u64);
        }
    }
    assert_eq!(sizes, [H2_FRAME, H2_FRAME, 40_000 - 2 * H2_FRAME]);
    assert!(body.is_end_stream());
    drop(body);
    assert_eq!(resets(&open), 0);
    assert_eq!(conn.0.in_flight.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn http1_frames_pass_whole_and_trailers_pass_on_both() {
    let open = connections(10);
    let conn = open.open();
    for h2 in [false, true] {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-sum", http::HeaderValue::from_static("1"));
        let frames = vec![
            Ok::<_, Infallible>(Frame::data(Bytes::from(vec![1u8; 20_000]))),
            Ok(Frame::trailers(trailers)),
        ];
        let body = conn
            .0
            .stream(h2)
            .body(StreamBody::new(stream::iter(frames)));
        let collected = body.collect().await.expect("body");
        assert_eq!(
            collected.trailers().map(|t| t["x-sum"].clone()),
            Some(http::HeaderValue::from_static("1"))
        );
        assert_eq!(collected.to_bytes().len(), 20_000);
    }
    assert_eq!(resets(&open), 0, "bodies that ended are not cancels");
}

#[tokio::test]
async fn only_answers_a_client_dropped_unfinished_count_as_resets() {
    let open = connections(2);
    let conn = open.open();
    // Not cancels: an empty answer hyper never polls, an answer never polled (HEAD), a failed
    // answer, and any HTTP/1 drop.
    drop(conn.0.stream(true).body(Empty::<Bytes>::new()));
    drop(
        conn.0
            .stream(true)
            .body(Full::new(Bytes::from_static(b"x"))),
    );
    conn.0.stream(true).failed();
    drop(conn.0.stream(false));
    assert_eq!(resets(&open), 0);
    // Cancels: before the answer, and mid-body after hyper asked for it.
    drop(conn.0.stream(true));
    let mut body = Box::pin(
        conn.0
            .stream(true)
            .body(Full::new(Bytes::from(vec![0u8; 40_000]))),
    );
    body.frame().await.expect("a frame").expect("data");
    drop(body);
    assert_eq!(conn.0.reason(), None, "two tokens, two cancels");
    drop(conn.0.stream(true));
    assert_eq!(conn.0.reason(), Some(Close::Resets));
    assert_eq!(resets(&open), 1);
}

#[tokio::test]
async fn the_connection_idle_the_longest_is_evicted_and_a_busy_one_never() {
    let open = connections(10);
    let busy = open.open();
    let _request = busy.0.stream(false);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let older = open.open();
    drop(older.0.stream(false));
    tokio::time::sleep(Duration::from_millis(5)).await;
    let newer = open.open();
    drop(newer.0.stream(false));
    assert!((open.evict().strong_count() > 0));
    assert_eq!(older.0.reason(), Some(Close::Evicted));
    assert_eq!(newer.0.reason(), None);
    assert!((open.evict().strong_count() > 0));
    assert_eq!(newer.0.reason(), Some(Close::Evicted));
    assert!(
        open.evict().strong_count() == 0,
        "only a busy connection is left"
    );
    assert_eq!(busy.0.reason(), None);
    drop(older);
    assert_eq!(
        lock(&open.open).len(),
        2,
        "a closed connection leaves the registry"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stream_stalls_only_while_the_socket_could_take_bytes() {
    let open = connections(10);
    let conn = open.open();
    // The answer's first frame waits for the client from here (send_timeout: 30 s).
    let _body = conn
        .0
        .stream(true)
        .body(Full::new(Bytes::from(vec![1u8; 40_000])));
    tokio::time::advance(Duration::from_secs(20)).await;
    assert_eq!(conn.0.check(), None);
    // A slow link: the socket is full for a minute, the frame waits its turn.
    conn.0.socket_full(true);
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(
        conn.0.check(),
        None,
        "time behind a full socket is not a stall"
    );
    conn.0.socket_full(false);
    tokio::time::advance(Duration::from_secs(9)).await;
    assert_eq!(conn.0.check(), None, "29 s of the 30 counted so far");
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(conn.0.check(), Some(Close::Stalled));
}

#[tokio::test(start_paused = true)]
async fn a_full_socket_excuses_a_stream_for_four_send_timeouts_at_most() {
    let open = connections(10);
    let conn = open.open();
    let _body = conn
        .0
        .stream(true)
        .body(Full::new(Bytes::from(vec![1u8; 40_000])));
    // A client that keeps its socket full (reading another stream slowly) while this one
    // gets no window: excused for 4 x 30 s in all, then the connection is closed.
    conn.0.socket_full(true);
    tokio::time::advance(Duration::from_secs(119)).await;
    assert_eq!(conn.0.check(), None);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(conn.0.check(), Some(Close::Stalled));
}
