//! A deadline for a connection's first bytes. hyper-util's `auto` builder reads the first bytes
//! of a connection to tell HTTP/1 from HTTP/2 before hyper's own header-read timer exists, and
//! waits for them forever: a client that connects and sends nothing would hold a connection
//! (and a `max_connections` slot) for as long as it likes.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Fails reads with `TimedOut` when no byte arrives within the deadline; after the first byte
/// it is a plain pass-through (the timer is dropped).
#[derive(Debug)]
pub(super) struct FirstBytes<T> {
    inner: T,
    /// Boxed so the wrapper stays `Unpin`, as hyper wants its IO; one allocation a connection.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<T> FirstBytes<T> {
    /// Wraps `inner`, whose first byte must arrive within `timeout` from now.
    pub(super) fn new(inner: T, timeout: Duration) -> Self {
        Self {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for FirstBytes<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let Some(deadline) = self.deadline.as_mut() else {
            return polled;
        };
        match polled {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                self.deadline = None;
                Poll::Ready(Ok(()))
            }
            Poll::Pending if deadline.as_mut().poll(cx).is_ready() => {
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no request within header_read_timeout",
                )))
            }
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for FirstBytes<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn silence_fails_the_first_read_and_a_byte_lifts_the_deadline() {
        let (client, server) = tokio::io::duplex(64);
        let mut guarded = FirstBytes::new(server, Duration::from_secs(5));
        let mut buf = [0u8; 8];
        let error = guarded.read(&mut buf).await.expect_err("timed out");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);

        let (mut client2, server2) = tokio::io::duplex(64);
        let mut guarded = FirstBytes::new(server2, Duration::from_secs(5));
        client2.write_all(b"G").await.expect("write");
        assert_eq!(guarded.read(&mut buf).await.expect("a byte"), 1);
        // Past the first byte, silence is someone else's business (hyper's header timer).
        let later = tokio::time::timeout(Duration::from_secs(60), guarded.read(&mut buf)).await;
        assert!(later.is_err(), "still waiting, no error after the deadline");
        drop(client);
    }
}
