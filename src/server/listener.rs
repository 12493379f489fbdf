//! Binding and accepting: every listener pagegate opens (clients, metrics, the demo backend)
//! accepts through [`accept`], which backs off instead of spinning when accepting fails; and
//! the clients' accept loop, which admits each newcomer to a `max_connections` slot, the
//! waiting room, or nowhere.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;

use super::StartError;
use super::peers::Peers;
use super::serving::Serving;
use crate::client_addr::ClientAddr;
use crate::config::defaults::{ACCEPT_BACKOFF, LISTEN_BACKLOG};

/// Binds `addr`, or says which address could not be bound. With `send_buffer`, every
/// accepted socket has that kernel send buffer (Linux copies the listener's to each, and turns
/// its autotuning off).
pub(super) async fn bind(
    addr: SocketAddr,
    send_buffer: Option<u64>,
) -> Result<TcpListener, StartError> {
    let Some(size) = send_buffer else {
        return TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source });
    };
    let bound = || -> std::io::Result<TcpListener> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        // As `TcpListener::bind` does: a restart rebinds while old connections linger.
        socket.set_reuseaddr(true)?;
        socket.set_send_buffer_size(u32::try_from(size).unwrap_or(u32::MAX))?;
        // Linux doubles what it is given, for its bookkeeping (and reports the double), and
        // caps it at twice `net.core.wmem_max` without an error: say so rather than run with
        // less.
        let got = u64::from(socket.send_buffer_size()?);
        if got < size.saturating_mul(2) {
            tracing::warn!(
                asked = size,
                got,
                "send_buffer is capped by the kernel: raise net.core.wmem_max to get it"
            );
        }
        socket.bind(addr)?;
        socket.listen(LISTEN_BACKLOG)
    };
    bound().map_err(|source| StartError::Bind { addr, source })
}

/// The next connection on `listener`. A connection that failed on its own (reset or aborted
/// before it was accepted) is skipped at once, as hyper-util's and axum's loops do; any other
/// failed accept is logged and tried again after [`ACCEPT_BACKOFF`]: out of file descriptors,
/// the pending connection stays in the backlog and every immediate retry would fail the same
/// way.
pub(crate) async fn accept(listener: &TcpListener, name: &str) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(error) if connection_error(&error) => {
                tracing::debug!(%error, listener = name, "a connection failed before its accept");
            }
            Err(error) => {
                tracing::warn!(%error, listener = name, "accept failed; retrying shortly");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Whether a failed accept is the one connection's failure, not the listener's.
fn connection_error(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// Where newcomers are admitted: a slot of `max_connections`, else the waiting room.
pub(super) struct Admission {
    /// The per-address cap (`max_connections_per_client`).
    pub(super) peers: Arc<Peers>,
    /// `max_connections` slots.
    pub(super) slots: Arc<Semaphore>,
    /// Places for newcomers waiting for a slot.
    pub(super) waiting: Arc<Semaphore>,
}

/// Accepts clients until `shutdown` completes.
pub(super) async fn accept_clients(
    listener: &TcpListener,
    serving: &Arc<Serving>,
    admission: &Admission,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => return,
            accepted = accept(listener, "clients") => accepted,
        };
        let client = ClientAddr::new(peer, &serving.trusted).with_tls(serving.tls);
        // A trusted proxy carries many clients' connections: it has no cap of its own.
        let admitted = if client.trusted() {
            Ok(None)
        } else {
            admission.peers.admit(client.key())
        };
        let Ok(peer_slot) = admitted else {
            // Over max_connections_per_client: closed at once, before a byte is read.
            drop(stream);
            continue;
        };
        if let Ok(permit) = Arc::clone(&admission.slots).try_acquire_owned() {
            serving.serve(stream, client, permit, peer_slot);
            continue;
        }
        // Every slot is taken: the newcomer waits in the waiting room; when that is full too,
        // so does the accept loop (further clients wait in the listen backlog).
        let place = tokio::select! {
            () = &mut shutdown => return,
            place = Arc::clone(&admission.waiting).acquire_owned() => place,
        };
        let Ok(place) = place else { return };
        tokio::spawn(Arc::clone(serving).wait(stream, client, peer_slot, place));
    }
}
