//! The `rustls::ClientConfig` of an `https://` upstream (`upstreams.NAME.tls`): the server's
//! certificate verified against a CA file or the system's trust store, the name verified (and
//! sent as SNI) the URL's host or `server_name`, and a client certificate when the backend
//! asks for one (mutual TLS).

use std::sync::Arc;

use rustls::pki_types::ServerName;

use super::{Identity, Roots};

/// An `https://` upstream's TLS.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct UpstreamTls {
    /// CAs the backend's certificate must chain to (`ca_file`); none: the system's.
    pub(crate) roots: Option<Roots>,
    /// The client certificate presented (`cert_file`, `key_file`).
    pub(crate) identity: Option<Identity>,
    /// The name verified and sent as SNI (`server_name`); none: the URL's host.
    pub(crate) server_name: Option<ServerName<'static>>,
}

/// The client config of `tls`, offering `h2` by ALPN when the upstream speaks HTTP/2, else
/// `http/1.1` (what the pool is built for, never a surprise switch). `Err` says what to change.
pub(crate) fn client_config(
    tls: &UpstreamTls,
    http2: bool,
) -> Result<rustls::ClientConfig, String> {
    let roots = match &tls.roots {
        Some(roots) => roots.store(),
        None => system_roots("tls.ca_file")?,
    };
    let builder = rustls::ClientConfig::builder_with_provider(super::provider())
        .with_protocol_versions(super::VERSIONS)
        .map_err(|e| e.to_string())?
        .with_root_certificates(Arc::new(roots));
    let mut config = match &tls.identity {
        Some(identity) => builder
            .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
            .map_err(|e| format!("the client certificate cannot be used ({e})"))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![if http2 {
        b"h2".to_vec()
    } else {
        b"http/1.1".to_vec()
    }];
    Ok(config)
}

/// The system's trust store (`SSL_CERT_FILE`/`SSL_CERT_DIR` when set, as OpenSSL reads them);
/// empty, `Err` names `key` as the way out.
pub(crate) fn system_roots(key: &str) -> Result<rustls::RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = rustls::RootCertStore::empty();
    store.add_parsable_certificates(found.certs);
    if store.is_empty() {
        let why = found
            .errors
            .first()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        return Err(format!(
            "the system's trust store holds no CA certificate{why}: set {key}, or install the system's CA certificates (ca-certificates)"
        ));
    }
    Ok(store)
}
