//! One backend's pooled keep-alive client ([`UpstreamClient`]), built once per upstream config
//! and shared by every route and generation that uses it unchanged.

use std::sync::Arc;

use http::HeaderValue;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::Body;
use crate::telemetry::UpstreamMetrics;
use crate::upstream::config::UpstreamConfig;

/// One backend's pooled keep-alive client, built once per upstream config and shared by every
/// route (and every generation) that uses it unchanged.
#[derive(Debug)]
pub struct UpstreamClient {
    pub(super) config: Arc<UpstreamConfig>,
    pub(super) client: Client<HttpConnector, Body>,
    /// The `Host` value of `host: upstream`, parsed once.
    pub(super) authority: Option<HeaderValue>,
    /// `http://authority/base_path`, lower-cased, when redirects to it are rewritten.
    pub(super) redirect_prefix: Option<String>,
    /// Time to first byte and failures, by cause.
    pub(super) metrics: UpstreamMetrics,
}

impl UpstreamClient {
    /// A client with its own connection pool for `config`, whose metrics count nowhere.
    pub fn new(config: Arc<UpstreamConfig>) -> Self {
        let metrics = UpstreamMetrics::detached(&config.name);
        Self::counted(config, metrics)
    }

    /// A client with its own connection pool for `config`, counted in `metrics`.
    pub(crate) fn counted(config: Arc<UpstreamConfig>, metrics: UpstreamMetrics) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle)
            .http2_only(config.http2)
            .timer(TokioTimer::new())
            .build(connector);
        let authority = config
            .origin
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
        let redirect_prefix = config.rewrite_redirects.then(|| {
            let authority = config.origin.authority().map_or("", |a| a.as_str());
            format!("http://{authority}{}", config.base_path).to_ascii_lowercase()
        });
        Self {
            config,
            client,
            authority,
            redirect_prefix,
            metrics,
        }
    }

    /// The config this client was built from.
    pub fn config(&self) -> &Arc<UpstreamConfig> {
        &self.config
    }
}
