//! Upgraded connections (WebSockets and other `Upgrade` protocols) tunnelled both ways between
//! the client and the upstream, with an idle timeout. pagegate does not read what flows: once
//! both sides have switched protocols, bytes are copied as they come.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{HeaderMap, HeaderValue, header};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::telemetry::TunnelOpen;

/// What an upgrade request carries to its answer: the protocol asked for and the client's side
/// of the connection, handed over once the upstream agrees.
#[derive(Debug)]
pub(super) struct Upgrade {
    pub(super) protocol: HeaderValue,
    pub(super) client: OnUpgrade,
    /// Held while the tunnel lives: the client connection's `max_connections` slot, the
    /// route's concurrency slot.
    pub(super) held: Vec<Arc<dyn std::any::Any + Send + Sync>>,
}

/// The protocol an upgrade may switch to. Only WebSocket: an `h2c` upgrade would let a client
/// speak HTTP/2 straight to the backend, past every route and list policy.
const WEBSOCKET: &[u8] = b"websocket";

/// The WebSocket upgrade a request asks for: `Connection` names `upgrade` and `Upgrade` is
/// `websocket`. Any other upgrade is not relayed (its headers are removed as hop-by-hop).
pub(super) fn requested(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = crate::http1::list_items(headers, header::CONNECTION)
        .any(|token| token.eq_ignore_ascii_case(b"upgrade"));
    let protocol = headers.get(header::UPGRADE)?;
    (asks && is_websocket(protocol)).then(|| protocol.clone())
}

/// Whether an `Upgrade` value is WebSocket.
pub(super) fn is_websocket(value: &HeaderValue) -> bool {
    value
        .as_bytes()
        .trim_ascii()
        .eq_ignore_ascii_case(WEBSOCKET)
}

/// Puts the upgrade back on a message whose hop-by-hop headers were removed.
pub(super) fn restore(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol);
}

/// Copies bytes both ways, each direction on its own, until both have ended (a side's EOF
/// half-closes the other side's write), either side fails, or no byte has moved either way for
/// a whole `idle` period (checked every `idle`, so a silent tunnel closes within 2 × `idle`; a
/// write that cannot proceed counts as no movement).
pub(super) async fn run(upgrade: Upgrade, upstream: OnUpgrade, idle: Duration, open: TunnelOpen) {
    let _open = open;
    let Upgrade { client, held, .. } = upgrade;
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(both) => both,
        Err(error) => {
            tracing::debug!(%error, "upgrade did not complete");
            return;
        }
    };
    let _held = held;
    let (client_read, client_write) = tokio::io::split(TokioIo::new(client));
    let (upstream_read, upstream_write) = tokio::io::split(TokioIo::new(upstream));
    let moved = AtomicU64::new(0);
    let pumps = async {
        tokio::try_join!(
            pump(client_read, upstream_write, &moved),
            pump(upstream_read, client_write, &moved),
        )
    };
    tokio::pin!(pumps);
    let mut seen = 0;
    loop {
        tokio::select! {
            result = &mut pumps => {
                if let Err(error) = result {
                    tracing::debug!(%error, "upgraded connection failed");
                }
                return;
            }
            () = tokio::time::sleep(idle) => {
                let now = moved.load(Ordering::Relaxed);
                if now == seen {
                    tracing::debug!(?idle, "upgraded connection idle; closing");
                    return;
                }
                seen = now;
            }
        }
    }
}

/// Copies one direction until EOF, then shuts the writer down; counts every byte moved.
async fn pump<R, W>(mut from: R, mut to: W, moved: &AtomicU64) -> std::io::Result<()>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        to.write_all(&buf[..n]).await?;
        moved.fetch_add(n as u64, Ordering::Relaxed);
    }
}
