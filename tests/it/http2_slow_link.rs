//! An HTTP/2 client on a slow link with many busy streams is served whole: its streams wait
//! their turn behind a full socket, which is not a stream's stall (real sockets, a small
//! `send_buffer` so the socket fills, the `h2` crate as the client reading at a fixed rate).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Sleep;

use crate::support::{Proxy, Upstream};

/// What the client reads per slice, and how often: 1 MiB/s.
const SLICE: usize = 16 * 1024;
const EVERY: Duration = Duration::from_millis(16);

/// A socket read at most [`SLICE`] bytes every [`EVERY`]: a slow link.
struct Throttled {
    inner: TcpStream,
    budget: usize,
    refill: Pin<Box<Sleep>>,
}

impl AsyncRead for Throttled {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.budget == 0 {
            ready!(this.refill.as_mut().poll(cx));
            this.budget = SLICE;
            let next = this.refill.deadline() + EVERY;
            this.refill.as_mut().reset(next);
        }
        let want = this.budget.min(buf.remaining());
        let got = {
            let mut part = ReadBuf::new(buf.initialize_unfilled_to(want));
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut part))?;
            part.filled().len()
        };
        buf.advance(got);
        this.budget -= got;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Throttled {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Reads one stream's answer whole, returning its length.
async fn read_whole(response: h2::client::ResponseFuture) -> Result<usize, h2::Error> {
    let mut body = response.await?.into_body();
    let mut len = 0;
    while let Some(data) = body.data().await {
        let data = data?;
        len += data.len();
        let _ = body.flow_control().release_capacity(data.len());
    }
    Ok(len)
}

#[tokio::test]
async fn many_busy_streams_on_a_slow_link_are_served_whole() {
    const STREAMS: usize = 64;
    const ANSWER: u64 = 48 * 1024;
    let upstream = Upstream::start(|_| async {
        http::Response::new(crate::support::bodies::pattern(ANSWER, 16 * 1024))
    })
    .await;
    // A 64 KiB send buffer (the kernel's own grows to 4 MiB on loopback), so the socket is
    // full while the client reads; 500 ms to take a frame.
    let proxy = Proxy::start(
        "send_timeout: 500ms\nsend_buffer: 64KiB\ndefault: {action: pass, upstream: app}\nupstreams: {app: {url: '{upstream}'}}\n",
        &upstream,
    )
    .await;
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(64 * 1024).expect("rcvbuf");
    let tcp = Throttled {
        inner: socket.connect(proxy.addr).await.expect("connect"),
        budget: SLICE,
        refill: Box::pin(tokio::time::sleep(EVERY)),
    };
    // Windows never limit the streams: only the link does.
    let (mut client, connection) = crate::support::widest_windows()
        .handshake::<_, Bytes>(tcp)
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let start = Instant::now();
    let mut reads = Vec::new();
    for _ in 0..STREAMS {
        let request = http::Request::get(proxy.url("/big"))
            .body(())
            .expect("request");
        let (response, _) = client.send_request(request, true).expect("send");
        reads.push(tokio::spawn(read_whole(response)));
    }
    for read in reads {
        let len = read.await.expect("task").expect("the stream was not cut");
        assert_eq!(len as u64, ANSWER);
    }
    // 3 MiB at 1 MiB/s: a round of one 16 KiB frame for each stream takes 1 s, twice
    // send_timeout, so a stream's frame waited longer than that for its turn.
    let took = start.elapsed();
    assert!(took > Duration::from_secs(2), "the link was slow: {took:?}");
    proxy.stop().await;
}
