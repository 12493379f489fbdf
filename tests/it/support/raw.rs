//! Raw HTTP/1.1 on both sides: bytes a client library would never send, and a backend that
//! answers with bytes a server library would never write.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Sends raw bytes to `addr` and returns what comes back until the connection closes or 2 s.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        stream.read_to_end(&mut out),
    )
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one request head, byte by byte (nothing after it is consumed); `None` if the
/// connection ends first.
pub async fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.unwrap_or(0) == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(head)
}

/// A backend speaking raw HTTP/1.1: reads one request head, writes `answer`, closes.
pub async fn raw_upstream(answer: &'static [u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                if read_head(&mut stream).await.is_none() {
                    return;
                }
                let _ = stream.write_all(answer).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

/// What a scripted backend does after reading a request head.
#[derive(Clone, Copy)]
pub enum Step {
    /// Writes these bytes.
    Write(&'static [u8]),
    /// Waits this many milliseconds.
    Wait(u64),
    /// Closes the connection (at once, or after the steps before it).
    Close,
    /// Ends the backend's side of the connection (a FIN) but goes on reading requests.
    HalfClose,
}

/// A backend that answers the `r`-th request on its `c`-th connection (both from 0) with
/// `script(c, r)`, counting the connections it accepts and the request heads it reads.
pub struct Scripted {
    pub addr: SocketAddr,
    opened: Arc<AtomicUsize>,
    heads: Arc<AtomicUsize>,
}

impl Scripted {
    pub async fn start(script: fn(usize, usize) -> Vec<Step>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let opened = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(AtomicUsize::new(0));
        let (count, read) = (Arc::clone(&opened), Arc::clone(&heads));
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let c = count.fetch_add(1, Ordering::SeqCst);
                let read = Arc::clone(&read);
                tokio::spawn(async move {
                    for r in 0.. {
                        if read_head(&mut stream).await.is_none() {
                            return;
                        }
                        read.fetch_add(1, Ordering::SeqCst);
                        for step in script(c, r) {
                            match step {
                                Step::Write(bytes) => {
                                    let _ = stream.write_all(bytes).await;
                                }
                                Step::Wait(ms) => {
                                    tokio::time::sleep(Duration::from_millis(ms)).await;
                                }
                                Step::Close => return,
                                Step::HalfClose => {
                                    let _ = stream.shutdown().await;
                                }
                            }
                        }
                    }
                });
            }
        });
        Self {
            addr,
            opened,
            heads,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Request heads read, over every connection.
    pub fn heads(&self) -> usize {
        self.heads.load(Ordering::SeqCst)
    }

    /// Connections accepted.
    pub fn opened(&self) -> usize {
        self.opened.load(Ordering::SeqCst)
    }
}
