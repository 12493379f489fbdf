//! Upgraded connections (WebSockets and other `Upgrade` protocols) tunnelled both ways between
//! the client and the upstream, with an idle timeout. pagegate does not read what flows: once
//! both sides have switched protocols, bytes are copied as they come.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, header};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What an upgrade request carries to its answer: the protocol asked for and the client's side
/// of the connection, handed over once the upstream agrees.
#[derive(Debug)]
pub(super) struct Upgrade {
    pub(super) protocol: HeaderValue,
    pub(super) client: OnUpgrade,
    /// Keeps the client connection's `max_connections` slot while the tunnel lives.
    pub(super) slot: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

/// The protocol an upgrade may switch to. Only WebSocket: an `h2c` upgrade would let a client
/// speak HTTP/2 straight to the backend, past every route and list policy.
const WEBSOCKET: &[u8] = b"websocket";

/// The WebSocket upgrade a request asks for: `Connection` names `upgrade` and `Upgrade` is
/// `websocket`. Any other upgrade is not relayed (its headers are removed as hop-by-hop).
pub(super) fn requested(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"upgrade"));
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

/// Copies bytes both ways until either side closes, fails, or both are silent for `idle`.
pub(super) async fn run(upgrade: Upgrade, upstream: OnUpgrade, idle: Duration) {
    let Upgrade { client, slot, .. } = upgrade;
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(both) => both,
        Err(error) => {
            tracing::debug!(%error, "upgrade did not complete");
            return;
        }
    };
    let _slot = slot;
    let (mut client_read, mut client_write) = tokio::io::split(TokioIo::new(client));
    let (mut upstream_read, mut upstream_write) = tokio::io::split(TokioIo::new(upstream));
    let mut from_client = vec![0u8; 16 * 1024];
    let mut from_upstream = vec![0u8; 16 * 1024];
    loop {
        let step = tokio::time::timeout(idle, async {
            tokio::select! {
                read = client_read.read(&mut from_client) => (true, read),
                read = upstream_read.read(&mut from_upstream) => (false, read),
            }
        })
        .await;
        let written = match step {
            Err(_) => {
                tracing::debug!(?idle, "upgraded connection idle; closing");
                break;
            }
            Ok((_, Ok(0) | Err(_))) => break,
            Ok((true, Ok(n))) => upstream_write.write_all(&from_client[..n]).await,
            Ok((false, Ok(n))) => client_write.write_all(&from_upstream[..n]).await,
        };
        if written.is_err() {
            break;
        }
    }
    let _ = tokio::join!(client_write.shutdown(), upstream_write.shutdown());
}
