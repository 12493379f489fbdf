//! One backend's pooled keep-alive client ([`UpstreamClient`]), built once per upstream config
//! and shared by every route and generation that uses it unchanged. `https://` upstreams
//! connect through hyper-rustls with the config [`crate::tls::client_config`] builds.

use std::sync::Arc;

use http::HeaderValue;
use hyper_rustls::{DefaultServerNameResolver, FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::connect::HttpConnector;

use crate::telemetry::UpstreamMetrics;
use crate::upstream::config::UpstreamConfig;
use crate::upstream::pool::Pool;

/// One backend's pooled keep-alive client, built once per upstream config and shared by every
/// route (and every generation) that uses it unchanged.
#[derive(Debug)]
pub struct UpstreamClient {
    pub(super) config: Arc<UpstreamConfig>,
    pub(super) pool: Pool,
    /// The `Host` value of `host: upstream`, parsed once.
    pub(super) authority: Option<HeaderValue>,
    /// `http://authority/base_path`, lower-cased, when redirects to it are rewritten.
    pub(super) redirect_prefix: Option<String>,
    /// Time to first byte and failures, by cause.
    pub(super) metrics: UpstreamMetrics,
}

impl UpstreamClient {
    /// A client with its own connection pool for `config`, whose metrics count nowhere.
    /// `Err` says why its TLS cannot be set up.
    pub fn new(config: Arc<UpstreamConfig>) -> Result<Self, String> {
        let metrics = UpstreamMetrics::detached(&config.name);
        Self::counted(config, metrics)
    }

    /// A client with its own connection pool for `config`, counted in `metrics`.
    pub(crate) fn counted(
        config: Arc<UpstreamConfig>,
        metrics: UpstreamMetrics,
    ) -> Result<Self, String> {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.connect_timeout));
        connector.set_nodelay(true);
        let connector = https(connector, config.tls.as_ref(), config.http2)?;
        let authority = config
            .origin
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
        let pool = Pool::new(connector, &config, authority.clone());
        let redirect_prefix = config.rewrite_redirects.then(|| {
            let authority = config.origin.authority().map_or("", |a| a.as_str());
            let scheme = config.origin.scheme_str().unwrap_or("http");
            format!("{scheme}://{authority}{}", config.base_path).to_ascii_lowercase()
        });
        Ok(Self {
            config,
            pool,
            authority,
            redirect_prefix,
            metrics,
        })
    }

    /// The config this client was built from.
    pub fn config(&self) -> &Arc<UpstreamConfig> {
        &self.config
    }
}

/// The connector of `config`: TLS for an `https://` upstream, plain TCP otherwise (its config
/// then carries no TLS and connects only to `http://`).
pub(crate) fn https(
    mut tcp: HttpConnector,
    tls: Option<&crate::tls::UpstreamTls>,
    http2: bool,
) -> Result<HttpsConnector<HttpConnector>, String> {
    // The scheme is checked by hyper-rustls, so TCP takes any.
    tcp.enforce_http(false);
    let Some(tls) = tls else {
        // An `http://` upstream: hyper-rustls passes such URIs to plain TCP; this config is
        // never used (no roots, so it could verify nothing).
        let unused = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        return Ok(HttpsConnector::new(
            tcp,
            unused,
            false,
            Arc::new(DefaultServerNameResolver::default()),
        ));
    };
    let client = crate::tls::client_config(tls, http2)?;
    let names: Arc<dyn hyper_rustls::ResolveServerName + Send + Sync> = match &tls.server_name {
        Some(name) => Arc::new(FixedServerNameResolver::new(name.clone())),
        None => Arc::new(DefaultServerNameResolver::default()),
    };
    Ok(HttpsConnector::new(tcp, client, true, names))
}
