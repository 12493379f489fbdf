//! The client-facing side: the `rustls::ServerConfig` built from `tls` (ALPN h2 and
//! http/1.1; with `client_ca_file`, only clients presenting a certificate that CA signed get
//! through), and [`Transport`], a client socket that is plaintext or TLS.
//!
//! [`Transport`] runs the handshake inside its first reads, so the wrappers around the socket
//! (the first-bytes deadline, the send-stall timeout, HTTP/2 frame accounting) see plaintext
//! and a client that stalls its handshake is closed by the same deadline as one that stalls
//! its head. Hand-written: tokio-rustls gives the handshake as a future, hyper wants a socket.

use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use prometheus_client::metrics::counter::Counter;
use rustls::server::WebPkiClientVerifier;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::server::TlsStream;

use super::{Identity, Roots};

/// The listener's TLS (`tls`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListenerTls {
    /// The certificate and key served (`cert_file`, `key_file`).
    pub(crate) identity: Identity,
    /// CAs client certificates must chain to (`client_ca_file`); none: no client certificate
    /// is asked for.
    pub(crate) client_ca: Option<Roots>,
}

/// The server config of `tls`. `previous` is the running one, when its sessions may resume
/// under `tls` (the same client CAs: a resumed session skips the client-certificate check):
/// its session cache is kept, so clients resume across reloads.
pub(crate) fn server_config(
    tls: &ListenerTls,
    previous: Option<&rustls::ServerConfig>,
) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let provider = super::provider();
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(super::VERSIONS)?;
    let builder = match &tls.client_ca {
        Some(roots) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots.store()), provider)
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?,
        ),
        None => builder.with_no_client_auth(),
    };
    let identity = &tls.identity;
    let mut config = builder.with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if let Some(previous) = previous {
        config.session_storage = Arc::clone(&previous.session_storage);
    }
    Ok(Arc::new(config))
}

/// A client socket: plaintext, or TLS whose handshake completes within the first reads.
pub(crate) enum Transport<IO> {
    /// No TLS on the listener.
    Plain(IO),
    /// The handshake is under way.
    Handshaking(Box<Handshake<IO>>),
    /// The handshake is done.
    Tls(Box<TlsStream<IO>>),
    /// The handshake failed; the error went to the read or write that drove it.
    Failed,
}

/// A handshake under way, and what its failure tells.
pub(crate) struct Handshake<IO> {
    accept: tokio_rustls::Accept<IO>,
    /// Counts failed handshakes (`pagegate_protections_total{reason="tls_handshake"}`).
    failed: Counter,
    /// Lets through a few lines a second about failed handshakes.
    lines: Arc<crate::telemetry::Throttle>,
    /// The client, for the log.
    peer: Option<IpAddr>,
}

impl<IO> std::fmt::Debug for Transport<IO> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Plain(_) => "Transport::Plain",
            Self::Handshaking(_) => "Transport::Handshaking",
            Self::Tls(_) => "Transport::Tls",
            Self::Failed => "Transport::Failed",
        })
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Transport<IO> {
    /// `io` as the listener serves it: plaintext, or a TLS handshake started with `tls` whose
    /// failure `failed` counts and `lines` lets into the log (from `peer`).
    pub(crate) fn new(
        io: IO,
        tls: Option<&Arc<rustls::ServerConfig>>,
        (failed, lines, peer): (Counter, &Arc<crate::telemetry::Throttle>, Option<IpAddr>),
    ) -> Self {
        match tls {
            Some(tls) => Self::Handshaking(Box::new(Handshake {
                accept: tokio_rustls::TlsAcceptor::from(Arc::clone(tls)).accept(io),
                failed,
                lines: Arc::clone(lines),
                peer,
            })),
            None => Self::Plain(io),
        }
    }

    /// Drives the handshake to its end; `Ready(Ok)` once the socket is plaintext or TLS.
    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Self::Handshaking(handshake) = self else {
            return Poll::Ready(match self {
                Self::Failed => Err(io::ErrorKind::NotConnected.into()),
                _ => Ok(()),
            });
        };
        match ready!(Pin::new(&mut handshake.accept).poll(cx)) {
            Ok(stream) => {
                *self = Self::Tls(Box::new(stream));
                Poll::Ready(Ok(()))
            }
            Err(error) => {
                handshake.failed.inc();
                // A scanner or a client with the wrong certificate: worth seeing, not an alarm.
                if let Some(suppressed) = handshake.lines.admit() {
                    let peer = handshake.peer.map(|p| p.to_string()).unwrap_or_default();
                    tracing::info!(%error, %peer, suppressed, "TLS handshake failed");
                }
                *self = Self::Failed;
                Poll::Ready(Err(error))
            }
        }
    }
}

use std::future::Future as _;

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for Transport<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_handshake(cx))?;
        match this {
            Self::Plain(io) => Pin::new(io).poll_read(cx, buf),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
            Self::Handshaking(_) | Self::Failed => {
                Poll::Ready(Err(io::ErrorKind::NotConnected.into()))
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Transport<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_handshake(cx))?;
        match this {
            Self::Plain(io) => Pin::new(io).poll_write(cx, buf),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
            Self::Handshaking(_) | Self::Failed => {
                Poll::Ready(Err(io::ErrorKind::NotConnected.into()))
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_handshake(cx))?;
        match this {
            Self::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
            Self::Handshaking(_) | Self::Failed => {
                Poll::Ready(Err(io::ErrorKind::NotConnected.into()))
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(io) => io.is_write_vectored(),
            Self::Tls(tls) => tls.is_write_vectored(),
            // Asked once, before the handshake: both TCP and rustls take vectors.
            Self::Handshaking(_) | Self::Failed => true,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_flush(cx),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
            Self::Handshaking(_) | Self::Failed => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_shutdown(cx),
            // close_notify, then the socket's FIN.
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
            // Nothing was said: dropping the socket closes it.
            Self::Handshaking(_) | Self::Failed => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests;
