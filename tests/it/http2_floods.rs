//! HTTP/2 clients that cost pagegate work without asking for anything: a reset loop paced to
//! stay under a refilling bucket still gets at most `http2_max_resets` requests onto the backend
//! per 10 s, and a flood of SETTINGS, PING, PRIORITY, RST_STREAM or WINDOW_UPDATE frames from a
//! client that reads every reply gets GOAWAY `ENHANCE_YOUR_CALM` and is closed — while a large
//! download whose client grants window after every frame is never cut (real sockets; raw frames
//! where the `h2` crate would not send them).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::support::{Proxy, Upstream, json_response};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A proxy with a metrics listener passing everything to `upstream`.
async fn pass_through(upstream: &Upstream, extra: &str) -> Proxy {
    let yaml = format!(
        "admin: {{listen: 127.0.0.1:0}}
{extra}
default: {{action: pass, upstream: app}}
upstreams: {{app: {{url: '{{upstream}}'}}}}
"
    );
    Proxy::start(&yaml, upstream).await
}

#[tokio::test]
async fn a_reset_loop_paced_under_the_refill_rate_is_cut_at_the_bound() {
    // Every request waits on the backend until the client cancels it.
    let upstream = Upstream::start(|_| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        json_response("{}")
    })
    .await;
    let proxy = pass_through(&upstream, "http2_max_resets: 10").await;
    let tcp = TcpStream::connect(proxy.addr).await.expect("connect");
    let (mut client, connection) = h2::client::handshake(tcp).await.expect("handshake");
    let connection = tokio::spawn(connection);
    // 2.5 cancels a second: a bucket refilling 10 per 10 s would allow about 17 before it ran
    // dry; no window of 10 s may see more than 10.
    let started = Instant::now();
    let mut sent = 0;
    while !connection.is_finished() && started.elapsed() < Duration::from_secs(15) {
        let Ok(ready) = client.clone().ready().await else {
            break;
        };
        client = ready;
        let request = http::Request::get(format!("http://{}/slow", proxy.addr))
            .body(())
            .expect("request");
        let Ok((_, mut stream)) = client.send_request(request, true) else {
            break;
        };
        sent += 1;
        // Cancel only once the request is on the backend.
        let on_backend = Instant::now();
        while upstream.seen().len() < sent && on_backend.elapsed() < Duration::from_secs(2) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stream.send_reset(h2::Reason::CANCEL);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let reached = upstream.seen().len();
    assert!(
        connection.is_finished(),
        "{reached} cancelled requests in {:?} and the connection is still open",
        started.elapsed()
    );
    assert!(reached <= 11, "{reached} requests reached the backend");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "cut within one window"
    );
    assert_eq!(proxy.protections("http2_resets").await, 1);
    proxy.stop().await;
}

/// One raw HTTP/2 frame.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("small").to_be_bytes();
    let mut bytes = vec![len[1], len[2], len[3], kind, flags];
    bytes.extend_from_slice(&stream.to_be_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// `GET /` on stream 1 (HPACK: `:method GET`, `:scheme http`, `:path /` from the static table,
/// `:authority x`), ending the stream.
fn get_on_stream_1() -> Vec<u8> {
    frame(0x1, 0x5, 1, &[0x82, 0x86, 0x84, 0x41, 0x01, b'x'])
}

/// What a flooding client saw: the GOAWAY error code pagegate sent, if any. With `opened`,
/// stream 1 is asked first and answered before the flood.
async fn flood(addr: SocketAddr, one: &[u8], opened: bool) -> (Option<u32>, usize) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (mut read, mut write) = tcp.into_split();
    // Reads every reply (PING and SETTINGS acks), keeping the GOAWAY's code.
    let reader = tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        let mut at = 0;
        let mut code = None;
        while at + 9 <= seen.len() {
            let len = usize::from(seen[at]) << 16
                | usize::from(seen[at + 1]) << 8
                | usize::from(seen[at + 2]);
            if seen[at + 3] == 0x7 && at + 9 + len <= seen.len() {
                let payload = &seen[at + 13..at + 17];
                code = Some(u32::from_be_bytes(payload.try_into().expect("4 bytes")));
            }
            at += 9 + len;
        }
        code
    });
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(frame(0x4, 0, 0, &[]));
    write.write_all(&hello).await.expect("preface");
    if opened {
        write.write_all(&get_on_stream_1()).await.expect("request");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let batch: Vec<u8> = (0..100).flat_map(|_| one.iter().copied()).collect();
    let mut sent = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        if write.write_all(&batch).await.is_err() {
            break;
        }
        sent += 100;
    }
    let code = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("pagegate closed the connection")
        .expect("reader");
    (code, sent)
}

#[tokio::test]
async fn control_frame_floods_get_goaway_enhance_your_calm() {
    let upstream = Upstream::start(|_| async { json_response("{}") }).await;
    let proxy = pass_through(&upstream, "").await;
    let floods: [(&str, Vec<u8>); 5] = [
        ("PING", frame(0x6, 0, 0, &[7; 8])),
        ("SETTINGS", frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100])),
        ("PRIORITY", frame(0x2, 0, 3, &[0, 0, 0, 1, 16])),
        ("WINDOW_UPDATE", frame(0x8, 0, 0, &[0, 0, 0, 1])),
        // On stream 1 once answered: h2 ignores resets of a closed stream, and no request is
        // cancelled, so only the control-frame count can cut it.
        ("RST_STREAM", frame(0x3, 0, 1, &[0, 0, 0, 8])),
    ];
    for (n, (kind, one)) in floods.iter().enumerate() {
        let (code, sent) = flood(proxy.addr, one, *kind == "RST_STREAM").await;
        assert!(
            sent < 1_000_000,
            "{kind}: {sent} frames went out and the connection stayed open"
        );
        assert_eq!(code, Some(0xb), "{kind}: GOAWAY ENHANCE_YOUR_CALM");
        assert_eq!(
            proxy.protections("http2_control_flood").await,
            n as u64 + 1,
            "{kind}"
        );
    }
    // Ordinary clients on the same proxy are unaffected.
    let tcp = TcpStream::connect(proxy.addr).await.expect("connect");
    let (mut client, connection) = h2::client::handshake(tcp).await.expect("handshake");
    tokio::spawn(connection);
    let request = http::Request::get(format!("http://{}/x", proxy.addr))
        .body(())
        .expect("request");
    let (response, _) = client.send_request(request, true).expect("send");
    assert_eq!(response.await.expect("answer").status(), 200);
    proxy.stop().await;
}

#[tokio::test]
async fn a_large_download_granted_frame_by_frame_is_never_cut() {
    const TOTAL: u64 = 256 * 1024 * 1024;
    let upstream = Upstream::start(|_| async {
        http::Response::new(crate::support::bodies::pattern(TOTAL, 64 * 1024))
    })
    .await;
    let proxy = pass_through(&upstream, "").await;
    // A 16 KiB stream and connection window: the client must grant window after every frame,
    // about 32,000 WINDOW_UPDATEs for this download.
    let tcp = TcpStream::connect(proxy.addr).await.expect("connect");
    let (mut client, connection) = h2::client::Builder::new()
        .initial_window_size(16 * 1024)
        .initial_connection_window_size(16 * 1024)
        .handshake::<_, Bytes>(tcp)
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let request = http::Request::get(format!("http://{}/big", proxy.addr))
        .body(())
        .expect("request");
    let (response, _) = client.send_request(request, true).expect("send");
    let mut body = response.await.expect("answer").into_body();
    let mut got = 0u64;
    while let Some(data) = body.data().await {
        let data = data.expect("never cut");
        got += data.len() as u64;
        let _ = body.flow_control().release_capacity(data.len());
    }
    assert_eq!(got, TOTAL);
    assert_eq!(proxy.protections("http2_control_flood").await, 0);
    proxy.stop().await;
}
