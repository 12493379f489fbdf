//! A real Envoy rate-limit service, started by the test on a free loopback port: the
//! `rls_server` example's service (the `limitador` crate's limiter behind tonic), stopped
//! when dropped or by [`RlsServer::stop`] (the service "dies").

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::tls::{Ca, Issued};

#[path = "../../../examples/rls_server/service.rs"]
mod service;

pub struct RlsServer {
    pub addr: SocketAddr,
    tls: bool,
    stop: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RlsServer {
    /// A service enforcing `limits` (Limitador's limits, as JSON).
    pub async fn start(limits: &str) -> Self {
        Self::serve(limits, None).await
    }

    /// The same over TLS with `issued`'s certificate (ALPN h2), asking for a client
    /// certificate signed by `clients` when given.
    pub async fn start_tls(limits: &str, issued: &Issued, clients: Option<&Ca>) -> Self {
        let config = super::tls::server_config(issued, clients, &[b"h2"]);
        Self::serve(
            limits,
            Some(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config))),
        )
        .await
    }

    async fn serve(limits: &str, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the rate-limit service");
        let addr = listener.local_addr().expect("its address");
        let service = service::Service::new(limits).expect("limits");
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let stopped = async {
            let _ = stopped.await;
        };
        let secure = tls.is_some();
        let task = tokio::spawn(async move {
            let _ = match tls {
                None => service.serve(listener, stopped).await,
                Some(acceptor) => {
                    service
                        .serve_incoming(handshakes(listener, acceptor), stopped)
                        .await
                }
            };
        });
        Self {
            addr,
            tls: secure,
            stop: std::sync::Mutex::new(Some(stop)),
            task,
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops serving: its connections are closed, the port then refuses new ones.
    pub fn stop(&self) {
        if let Some(stop) = self.stop.lock().expect("lock").take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for RlsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The connections of `listener`, each after its TLS handshake (one at a time: a test's
/// clients are few). A failed handshake is an error item, which the server skips.
fn handshakes(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
) -> impl tokio_stream::Stream<Item = std::io::Result<Tls>> {
    futures_util::stream::unfold((listener, acceptor), |(listener, acceptor)| async move {
        let accepted = match listener.accept().await {
            Ok((tcp, _)) => {
                let _ = tcp.set_nodelay(true);
                acceptor.accept(tcp).await.map(Tls)
            }
            Err(error) => Err(error),
        };
        Some((accepted, (listener, acceptor)))
    })
}

/// A TLS connection as tonic's server takes one (it knows TLS streams only with TLS
/// features of its own).
pub struct Tls(tokio_rustls::server::TlsStream<tokio::net::TcpStream>);

impl tonic::transport::server::Connected for Tls {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for Tls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tls {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
