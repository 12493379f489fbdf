//! The floor under any tokio hop: one task per client connection that parses heads with
//! httparse and drives its own upstream connection, with no HTTP library above the socket.
//!
//! This is a measurement, not a proxy: it forwards only what `bench/hop.sh` sends (requests
//! without a body, answers framed by `Content-Length`) and refuses everything else by closing
//! the connection. It does less than a proxy must, so it reads slightly low as a floor: an
//! answer to HEAD, or a 204 or 304, with a `Content-Length` would wait for a body that never
//! comes; an upstream's `Connection: close` is passed on and the connection reused; the
//! answer's hop-by-hop headers are not removed. It is the engine issue 19 asks whether to build: the work per request of
//! tokio, httparse and the kernel, with headers copied once from the read buffer into the
//! write buffer. `RAW=1 bench/hop.sh` runs it beside nginx, hyper's floor (`bare_hop`) and
//! pagegate, so each is measured in the same rounds.
//!
//! ```text
//! cargo run --release --example raw_hop -- 127.0.0.1:19007 127.0.0.1:19001
//! ```

use std::net::SocketAddr;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Headers a head may carry before the connection is closed.
const MAX_HEADERS: usize = 64;
/// Bytes a head may take before the connection is closed.
const MAX_HEAD: usize = 16 * 1024;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: raw_hop LISTEN_ADDR UPSTREAM_ADDR (say 127.0.0.1:19007 127.0.0.1:19001)";
    let listen: SocketAddr = args.next().ok_or(usage)?.parse()?;
    let upstream: SocketAddr = args.next().ok_or(usage)?.parse()?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve(listen, upstream))
}

async fn serve(listen: SocketAddr, upstream: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind(listen).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = connection(stream, upstream).await;
        });
    }
}

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// Serves one client connection until it closes, over one upstream connection of its own.
async fn connection(mut client: TcpStream, upstream: SocketAddr) -> Result<(), Failure> {
    let mut from_client = BytesMut::with_capacity(8 * 1024);
    let mut from_upstream = BytesMut::with_capacity(8 * 1024);
    let mut out = Vec::with_capacity(8 * 1024);
    let mut backend: Option<TcpStream> = None;
    loop {
        // Each head is parsed once; the request's is copied out while its headers are at hand.
        let Some(used) = read_head(&mut client, &mut from_client, |head| {
            out.clear();
            copy_request(head, &mut out)
        })
        .await?
        else {
            return Ok(());
        };
        from_client.advance(used);
        let backend = match &mut backend {
            Some(stream) => stream,
            None => {
                let stream = TcpStream::connect(upstream).await?;
                stream.set_nodelay(true)?;
                backend.insert(stream)
            }
        };
        backend.write_all(&out).await?;
        let Some((used, length)) = read_head(backend, &mut from_upstream, response_length).await?
        else {
            return Err("the upstream closed before its answer".into());
        };
        // The head and whatever of the body came with it go out in one write.
        let mut left = length;
        let first = (used + left).min(from_upstream.len());
        left -= first - used;
        client.write_all(&from_upstream[..first]).await?;
        from_upstream.advance(first);
        while left > 0 {
            if backend.read_buf(&mut from_upstream).await? == 0 {
                return Err("the upstream closed inside its body".into());
            }
            let take = left.min(from_upstream.len());
            client.write_all(&from_upstream[..take]).await?;
            from_upstream.advance(take);
            left -= take;
        }
    }
}

/// Reads until `parse` finds a whole head; what it made of it, or `None` at a clean end.
async fn read_head<T>(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    mut parse: impl FnMut(&[u8]) -> Result<Option<T>, Failure>,
) -> Result<Option<T>, Failure> {
    loop {
        if !buf.is_empty()
            && let Some(done) = parse(buf)?
        {
            return Ok(Some(done));
        }
        if buf.len() > MAX_HEAD {
            return Err("a head too large".into());
        }
        if stream.read_buf(buf).await? == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err("closed inside a head".into())
            };
        }
    }
}

/// Once the head is whole: writes the request line and the end-to-end headers to `out` and
/// returns the head's length. A request with a body is refused.
fn copy_request(buf: &[u8], out: &mut Vec<u8>) -> Result<Option<usize>, Failure> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(used) = request.parse(buf)? else {
        return Ok(None);
    };
    let (Some(method), Some(path)) = (request.method, request.path) else {
        return Err("a partial head".into());
    };
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for header in request.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
        {
            return Err("a request with a body".into());
        }
        if name.eq_ignore_ascii_case("connection") || name.eq_ignore_ascii_case("keep-alive") {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(header.value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(Some(used))
}

/// Once the head is whole: its length and the body's; an answer framed any other way than by
/// one `Content-Length` is refused.
fn response_length(buf: &[u8]) -> Result<Option<(usize, usize)>, Failure> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(used) = response.parse(buf)? else {
        return Ok(None);
    };
    let mut length = None;
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err("a chunked answer".into());
        }
        if header.name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(header.value)?.trim().parse::<usize>()?;
            if length.is_some_and(|seen| seen != value) {
                return Err("two lengths".into());
            }
            length = Some(value);
        }
    }
    let length = length.ok_or("an answer without a length")?;
    Ok(Some((used, length)))
}
