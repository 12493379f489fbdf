//! Who a client is for a route's limits: its address (as `trusted_proxies` decides, IPv6 by
//! /64), a hashed request header, or both. A request without the header is keyed by its
//! address: leaving the header out is never a way around a limit.

use std::net::IpAddr;

use sha2::{Digest, Sha256};

use crate::client_addr::ClientAddr;
use crate::identity::Verified;
use crate::limit::config::ClientKeySource;

/// A client's identity for limits: 128 bits, never the header's text (a key an auth layer set
/// is a secret; only its hash is kept in memory, sent to Redis or logged). It also carries the
/// address its request came from, for the per-address rate ([`ClientKey::of_address`]); that
/// is not part of its identity (equality and hashing read the first field alone), so a header
/// key is the same client from any address. The third field is its tenant class (0: the
/// default; [`crate::limit::tenant`]), which picks the per-client limits it meets and is not
/// part of its identity either.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientKey(pub(crate) u128, pub(crate) u128, pub(crate) u8);

impl PartialEq for ClientKey {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for ClientKey {}

impl std::hash::Hash for ClientKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl ClientKey {
    fn address(ip: IpAddr) -> Self {
        let address = match ip {
            IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
            IpAddr::V6(v6) => u128::from(v6),
        };
        Self(address, address, 0)
    }

    /// The key of the address this key's request came from.
    pub(crate) fn of_address(&self) -> Self {
        Self(self.1, self.1, 0)
    }

    fn hashed(parts: &[&[u8]], address: Self) -> Self {
        let mut hash = Sha256::new();
        for part in parts {
            // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part);
        }
        let digest = hash.finalize();
        let mut first = [0u8; 16];
        first.copy_from_slice(&digest[..16]);
        Self(u128::from_be_bytes(first), address.1, 0)
    }

    /// The key of a request, from its headers and its resolved client.
    pub(crate) fn of(
        source: &ClientKeySource,
        headers: &http::HeaderMap,
        client: Option<&ClientAddr>,
        verified: Option<&Verified>,
    ) -> Self {
        let ip = client.map_or(IpAddr::from([0, 0, 0, 0]), ClientAddr::key);
        // One value exactly: a repeated header counts as absent and the address decides.
        let header = |name| crate::client_addr::single_header(headers, name).map(|v| v.as_bytes());
        let address = Self::address(ip);
        match source {
            ClientKeySource::Client => address,
            ClientKeySource::Header(name) => match header(name) {
                Some(value) => Self::hashed(&[b"h", value], address),
                None => address,
            },
            ClientKeySource::HeaderAndClient(name) => match header(name) {
                Some(value) => Self::hashed(&[b"hc", value, &address.0.to_be_bytes()], address),
                None => address,
            },
            // The gate in front verified the token and that it has the claim; an anonymous
            // request (`anonymous: client`) has no claims and is keyed by its address.
            ClientKeySource::Claim(key) => match verified.and_then(|v| v.claim(&key.claim)) {
                Some(value) => {
                    let identity = key.identity.name.as_bytes();
                    let parts: [&[u8]; 4] =
                        [b"j", identity, key.claim.as_bytes(), value.as_bytes()];
                    Self::hashed(&parts, address)
                }
                None => address,
            },
        }
    }

    /// The same key in tenant class `class`.
    pub(crate) fn in_class(self, class: u8) -> Self {
        Self(self.0, self.1, class)
    }

    /// Its tenant class, as an index into a route's classes.
    pub(crate) fn class(&self) -> usize {
        usize::from(self.2)
    }

    /// A short, stable rendering for logs and Redis keys (the hash, never the header),
    /// written where it is used (a Redis key is formatted once, not twice).
    pub(crate) fn short(&self) -> impl std::fmt::Display + use<> {
        Short(self.0)
    }
}

/// [`ClientKey::short`]: the hash in 32 hex digits.
struct Short(u128);

impl std::fmt::Display for Short {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

#[cfg(test)]
mod tests;
