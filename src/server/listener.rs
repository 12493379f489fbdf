//! Binding and accepting: every listener pagegate opens (clients, metrics, the demo backend)
//! accepts through [`accept`], which backs off instead of spinning when accepting fails; and
//! the clients' accept loop, which admits each newcomer to a `max_connections` slot, the
//! waiting room, or nowhere.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::StartError;
use super::peers::Peers;
use super::serving::Serving;
use crate::client_addr::ClientAddr;
use crate::config::defaults::ACCEPT_BACKOFF;

/// Binds `addr`, or says which address could not be bound.
pub(super) async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

/// The next connection on `listener`. A failed accept is logged and tried again after
/// [`ACCEPT_BACKOFF`]: out of file descriptors, the pending connection stays in the backlog and
/// every immediate retry would fail the same way.
pub(crate) async fn accept(listener: &TcpListener, name: &str) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(error) => {
                tracing::warn!(%error, listener = name, "accept failed; retrying shortly");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
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
