//! The certificates a generation presents: their expiries in the metrics, and the list a
//! reload checks for validity.

use super::Generation;
use crate::config::Config;
use crate::telemetry::Metrics;

impl Generation {
    /// Shows this generation's certificates' expiries in the metrics, and warns of chains
    /// with a certificate that expires before their first: once it serves (a reload refused
    /// after building must not hide the running certificate's date).
    pub(crate) fn show_certificates(&self, metrics: &Metrics) {
        for (name, identity) in certificates(&self.config) {
            if let Some(warning) = identity.chain_warning() {
                tracing::warn!(certificate = %name, file = %identity.cert_file.display(), "{warning}");
            }
        }
        metrics.lifecycle.certificates(
            certificates(&self.config)
                .into_iter()
                .map(|(name, identity)| (name, identity.not_after))
                .collect(),
        );
    }
}

/// The certificates `config` presents, by metric name.
pub(crate) fn certificates(config: &Config) -> Vec<(String, &crate::tls::Identity)> {
    let listener = config
        .server
        .tls
        .as_ref()
        .map(|tls| ("listener".to_owned(), &tls.identity));
    let upstreams = config.upstreams.values().filter_map(|upstream| {
        let identity = upstream.tls.as_ref()?.identity.as_ref()?;
        Some((format!("upstreams.{}", upstream.name), identity))
    });
    // The client certificate shown to the rate-limit service: once it expires, every limit
    // it decides fails as `on_store_error` says.
    let rls = config.rate_limit_service.as_ref().and_then(|rls| {
        let identity = rls.tls.as_ref()?.identity.as_ref()?;
        Some(("rate_limit_service".to_owned(), identity))
    });
    // Redis's client certificate: once it expires, every shared limit fails as
    // `on_redis_error` says.
    let redis = config.redis.as_ref().and_then(|redis| {
        let identity = redis.tls.as_ref()?.client.as_ref()?;
        Some(("redis".to_owned(), identity))
    });
    // The client certificate a `jwks_url` is fetched with: once it expires, the key set is
    // no longer refreshed.
    let jwks = config.identities.iter().filter_map(|(name, identity)| {
        let crate::identity::config::KeySource::Url(url) = &identity.keys else {
            return None;
        };
        Some((format!("identities.{name}"), url.tls.identity.as_ref()?))
    });
    listener
        .into_iter()
        .chain(upstreams)
        .chain(rls)
        .chain(redis)
        .chain(jwks)
        .collect()
}
