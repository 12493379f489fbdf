//! TLS on both sides of the proxy, with the binary's one crypto provider (`ring`, which TLS to
//! PostgreSQL uses too):
//!
//! * [`files`]: certificates, keys and CA bundles read from PEM files, with a fingerprint of
//!   what was read (a reload rebuilds what changed) and the certificate's expiry;
//! * [`listener`]: the client-facing `rustls::ServerConfig` (ALPN h2 and http/1.1, an optional
//!   client-certificate check) and [`Transport`], a client socket whose handshake runs inside
//!   its first read, under the same first-bytes deadline as a plaintext request;
//! * [`upstream`]: the `rustls::ClientConfig` of an `https://` upstream (system roots or a CA
//!   file, SNI, an optional client certificate).

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

mod files;
mod listener;
mod upstream;

pub(crate) use files::{Identity, Roots, file_changed, fingerprint};
pub(crate) use listener::{ListenerTls, Transport, server_config};
pub(crate) use upstream::{UpstreamTls, client_config, system_roots};

/// The crypto provider every TLS config of the binary is built with: `ring`. Named, never the
/// process default, so no dependency can swap it (`deny.toml` bans aws-lc).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The protocol versions pagegate speaks: TLS 1.3 and 1.2 (rustls has no older ones).
const VERSIONS: &[&rustls::SupportedProtocolVersion] = rustls::DEFAULT_VERSIONS;
