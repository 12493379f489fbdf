use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

const LONG: Duration = Duration::from_secs(3600);

#[tokio::test(start_paused = true)]
async fn silence_fails_the_first_read_and_a_byte_lifts_the_deadline() {
    let (client, server) = tokio::io::duplex(64);
    let mut guarded = ClientIo::new(server, Duration::from_secs(5), LONG, Closed::default());
    let mut buf = [0u8; 8];
    let error = guarded.read(&mut buf).await.expect_err("timed out");
    assert_eq!(error.kind(), io::ErrorKind::TimedOut);

    // A byte of the HTTP/2 preface keeps the deadline: the sniff is still waiting.
    let (mut partial, server) = tokio::io::duplex(64);
    let mut guarded = ClientIo::new(server, Duration::from_secs(5), LONG, Closed::default());
    partial.write_all(b"PRI").await.expect("write");
    assert_eq!(guarded.read(&mut buf).await.expect("bytes"), 3);
    let error = guarded.read(&mut buf).await.expect_err("timed out");
    assert_eq!(error.kind(), io::ErrorKind::TimedOut);

    let (mut client2, server2) = tokio::io::duplex(64);
    let mut guarded = ClientIo::new(server2, Duration::from_secs(5), LONG, Closed::default());
    client2.write_all(b"G").await.expect("write");
    assert_eq!(guarded.read(&mut buf).await.expect("a byte"), 1);
    // Past the first byte, silence is someone else's business (hyper's header timer).
    let later = tokio::time::timeout(Duration::from_secs(60), guarded.read(&mut buf)).await;
    assert!(later.is_err(), "still waiting, no error after the deadline");
    drop(client);
}

#[tokio::test(start_paused = true)]
async fn a_write_nobody_reads_fails_after_the_send_timeout_and_a_slow_reader_does_not() {
    let (mut client, server) = tokio::io::duplex(16);
    let mut guarded = ClientIo::new(server, LONG, Duration::from_secs(5), Closed::default());
    // A slow reader: 16 bytes every 4 s keeps every write within 5 s of progress.
    let reader = tokio::spawn(async move {
        let mut buf = [0u8; 16];
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_secs(4)).await;
            let _ = client.read(&mut buf).await;
        }
        client // then reads nothing more
    });
    guarded
        .write_all(&[b'x'; 16 * 8])
        .await
        .expect("slow but steady");
    let _client = reader.await.expect("reader");
    let error = guarded.write_all(&[b'y'; 64]).await.expect_err("stalled");
    assert_eq!(error.kind(), io::ErrorKind::TimedOut);
}

/// A transport that takes the client's bytes and yields no plaintext yet, as a TLS handshake
/// under way does.
struct Handshaking<IO>(IO);

impl<IO: AsyncRead + Unpin> AsyncRead for Handshaking<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        _: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut scratch = [0u8; 64];
        let mut taken = ReadBuf::new(&mut scratch);
        match Pin::new(&mut self.0).poll_read(cx, &mut taken) {
            Poll::Ready(Ok(())) if !taken.filled().is_empty() => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            other => other,
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Handshaking<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[tokio::test(start_paused = true)]
async fn a_handshake_under_way_is_a_head_begun_not_silence() {
    use crate::server::connection::{Connections, Settings};
    let open = Connections::new(
        Settings {
            http2_idle_timeout: LONG,
            send_timeout: LONG,
            http2_max_resets: 10,
        },
        crate::server::connection::Closed::default(),
    );
    let conn = open.open();
    let (mut client, server) = tokio::io::duplex(64);
    let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let inner = Handshaking(Arrivals::new(server, std::sync::Arc::clone(&count)));
    let mut guarded = ClientIo::new(inner, LONG, LONG, Closed::default())
        .watched_by(std::sync::Arc::clone(&conn.0))
        .noting(count);
    // Half a second in, the ClientHello's first bytes come, and the handshake reads them: no
    // plaintext yet.
    let half = crate::config::defaults::SILENT_NEWCOMER / 2;
    tokio::time::advance(half).await;
    client.write_all(&[0x16, 0x03, 0x01]).await.expect("write");
    let mut buf = [0u8; 8];
    let read = tokio::time::timeout(Duration::from_millis(1), guarded.read(&mut buf)).await;
    assert!(read.is_err(), "no plaintext while handshaking");
    // Past SILENT_NEWCOMER since it was accepted, it is not a silent connection: its head
    // began half a second ago.
    tokio::time::advance(half + Duration::from_millis(100)).await;
    assert_eq!(
        open.evict().strong_count(),
        0,
        "a handshake under way is kept"
    );
    // Past SLOW_HEAD after its first byte, it is a slow head, as a trickled head is.
    tokio::time::advance(crate::config::defaults::SLOW_HEAD).await;
    assert!(
        open.evict().strong_count() > 0,
        "a slow handshake is evictable"
    );
}

/// A transport whose shutdown never completes, as TLS's close_notify to a client that reads
/// nothing does.
struct NeverShuts<IO>(IO);

impl<IO: AsyncRead + Unpin> AsyncRead for NeverShuts<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for NeverShuts<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Pending
    }
}

#[tokio::test(start_paused = true)]
async fn a_shutdown_the_client_never_takes_fails_after_the_send_timeout() {
    let (_client, server) = tokio::io::duplex(64);
    let mut guarded = ClientIo::new(
        NeverShuts(server),
        LONG,
        Duration::from_secs(5),
        Closed::default(),
    );
    let started = tokio::time::Instant::now();
    let error = guarded.shutdown().await.expect_err("stalled");
    assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    assert_eq!(started.elapsed(), Duration::from_secs(5));
}
