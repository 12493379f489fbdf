//! hyper's side of serving: its connection settings ([`builder`]), and the rest of a
//! connection pagegate's own HTTP/1.1 path hands it ([`to_hyper`]).

use std::future::Future;
use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::Either;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;

use super::requests::Handler;
use crate::config::ServerConfig;
use crate::server::http1::{Graceful, Prefixed};
use crate::server::incoming;

/// hyper's connection settings: head deadline and size on HTTP/1, PINGs and header-list size on
/// HTTP/2.
fn builder(settings: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let head_bytes = usize::try_from(settings.max_head_bytes).unwrap_or(usize::MAX);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The head must arrive in time; hyper's timer runs from when a connection waits for a
    // head, so an idle HTTP/1 keep-alive connection is closed after it too.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        // Bounds head memory: max_connections x max_head_bytes. hyper-util's auto builder
        // offers the read buffer's cap, not a head cap of its own: a head that does not fit
        // gets 431 (request bodies are read in chunks of at most this size).
        .max_buf_size(head_bytes);
    // PINGs find HTTP/2 clients that went away without closing. A stream's answer waits in
    // h2's send buffer, and hyper pulls the next frame from the backend whenever that buffer
    // has room under the client's flow-control window, whatever the socket takes: with
    // hyper's defaults (about 400 KB a stream, 200 streams) a client that grants large windows
    // and reads nothing made one connection hold 80 MB. Two frames a stream and nginx's 128
    // streams hold at most 4 MiB, and a stream's stall clock follows the socket.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(settings.http2_keepalive_interval)
        .keep_alive_timeout(settings.http2_keepalive_timeout)
        .max_header_list_size(u32::try_from(head_bytes).unwrap_or(u32::MAX))
        .max_send_buf_size(H2_SEND_BUFFER)
        .max_concurrent_streams(H2_MAX_STREAMS);
    builder
}

/// Bytes of one HTTP/2 stream's answer h2 holds for the socket: two frames.
const H2_SEND_BUFFER: usize = 2 * crate::server::connection::H2_FRAME;

/// Streams one HTTP/2 connection may have open at once (nginx's default).
const H2_MAX_STREAMS: u32 = 128;

/// hyper's connection builders: `auto` for a connection from its first byte (HTTP/1 or
/// HTTP/2), `http1` for one pagegate's own path served requests on (it stays HTTP/1, as a
/// connection of hyper's own would).
pub(super) struct Builders {
    pub(super) auto: auto::Builder<TokioExecutor>,
    http1: http1::Builder,
}

impl Builders {
    pub(super) fn new(settings: &ServerConfig) -> Self {
        let head_bytes = usize::try_from(settings.max_head_bytes).unwrap_or(usize::MAX);
        let mut http1 = http1::Builder::new();
        // As `builder`'s HTTP/1 half.
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(settings.header_read_timeout)
            .max_buf_size(head_bytes);
        Self {
            auto: builder(settings),
            http1,
        }
    }
}

/// hyper serves the rest of a connection pagegate's own path handed over (`io` puts back what
/// that path read; `first` while it served no request), with upgrades: WebSockets and other
/// `Upgrade` protocols are tunnelled.
pub(super) fn to_hyper<IO>(
    builders: &Builders,
    io: Prefixed<IO>,
    first: bool,
    handler: Handler,
    graceful: Arc<Graceful>,
) -> impl Future<Output = Result<(), crate::BoxError>> + use<IO>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
        let h2 = req.version() == http::Version::HTTP_2;
        handler.call(incoming(req), h2)
    });
    if first {
        let connection = builders
            .auto
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        return Either::Left(graceful.follow(connection, |c| c.graceful_shutdown()));
    }
    let connection = builders
        .http1
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let served = graceful.follow(connection, |c| c.graceful_shutdown());
    Either::Right(served.map(|ended| ended.map_err(Into::into)))
}
