//! An optional cap on connections per client address (`max_connections_per_client`), so one
//! address cannot take every `max_connections` slot. Off by default: behind an ingress or a load
//! balancer every connection comes from the same few peers.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::metrics::counter::Counter;

/// Open connections per peer key.
#[derive(Debug)]
pub(super) struct Peers {
    cap: Option<NonZeroU32>,
    open: Mutex<HashMap<IpAddr, u32>>,
    refused: Counter,
}

/// A peer's share of the cap, given back when the connection ends.
#[derive(Debug)]
pub(super) struct PeerSlot {
    peers: Arc<Peers>,
    key: IpAddr,
}

impl Peers {
    /// Caps each peer at `cap` connections (`None`: no cap), counting refusals in `refused`.
    pub(super) fn new(cap: Option<NonZeroU32>, refused: Counter) -> Arc<Self> {
        Arc::new(Self {
            cap,
            open: Mutex::new(HashMap::new()),
            refused,
        })
    }

    /// Admits one more connection from `key` (`Ok(None)`: no cap), or refuses it.
    pub(super) fn admit(self: &Arc<Self>, key: IpAddr) -> Result<Option<PeerSlot>, ()> {
        let Some(cap) = self.cap else {
            return Ok(None);
        };
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(key).or_default();
        if *count >= cap.get() {
            self.refused.inc();
            return Err(());
        }
        *count += 1;
        Ok(Some(PeerSlot {
            peers: Arc::clone(self),
            key,
        }))
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = self
            .peers
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests;
