//! The files a config read besides itself (certificates, keys, CA bundles, token keys), which
//! a reload reads again: their paths, for the watcher, and whether they changed since.

use super::Config;

impl Config {
    /// The certificates with their keys, and the CA bundles, the listener, the upstreams, the
    /// rate-limit service and Redis read.
    fn tls_read(&self) -> (Vec<&crate::tls::Identity>, Vec<&crate::tls::Roots>) {
        let listener = self.server.tls.as_ref();
        // An identity's `jwks_url` is fetched with a TLS block of the upstreams' kind, as the
        // rate-limit service is reached.
        let jwks = self.identities.values().filter_map(|i| match &i.keys {
            crate::identity::config::KeySource::Url(url) => Some(&url.tls),
            crate::identity::config::KeySource::Read(_) => None,
        });
        let rls = self
            .rate_limit_service
            .as_ref()
            .and_then(|r| r.tls.as_ref());
        let upstreams = self
            .upstreams
            .values()
            .filter_map(|u| u.tls.as_ref())
            .chain(jwks)
            .chain(rls);
        let redis = self.redis.as_ref().and_then(|r| r.tls.as_ref());
        let identities = listener.map(|t| &t.identity);
        let identities = identities
            .into_iter()
            .chain(upstreams.clone().filter_map(|t| t.identity.as_ref()))
            .chain(redis.and_then(|t| t.client.as_ref()));
        let roots = listener.and_then(|t| t.client_ca.as_ref());
        let roots = roots
            .into_iter()
            .chain(upstreams.filter_map(|t| t.roots.as_ref()))
            .chain(redis.and_then(|t| t.ca.as_ref()));
        (identities.collect(), roots.collect())
    }

    /// The CA files the databases' TLS reads, with the hash of what was read.
    fn database_roots(&self) -> impl Iterator<Item = (&std::path::Path, &[u8; 32])> {
        self.postgres.values().filter_map(|db| match &db.tls {
            Some(crate::table::config::TlsRoots::File {
                path, fingerprint, ..
            }) => Some((path.as_path(), fingerprint)),
            _ => None,
        })
    }

    /// The token keys read from files (`jwks_file`, `public_key_file`).
    fn keys_read(&self) -> impl Iterator<Item = &crate::identity::config::ReadKeys> {
        self.identities.values().filter_map(|i| match &i.keys {
            crate::identity::config::KeySource::Read(read) => Some(read),
            crate::identity::config::KeySource::Url(_) => None,
        })
    }

    /// Every certificate, key and CA file and every token key file the config read (a reload
    /// reads them again).
    pub(crate) fn tls_paths(&self) -> Vec<std::path::PathBuf> {
        let (identities, roots) = self.tls_read();
        let pairs = identities
            .into_iter()
            .flat_map(|i| [i.cert_file.clone(), i.key_file.clone()]);
        let keys = self.keys_read().filter_map(|k| k.file.clone());
        let databases = self.database_roots().map(|(path, _)| path.to_owned());
        pairs
            .chain(roots.into_iter().map(|r| r.file.clone()))
            .chain(keys)
            .chain(databases)
            .collect()
    }

    /// Whether a TLS or token key file now differs from what the config read (or cannot be
    /// read now).
    pub(crate) fn tls_changed(&self) -> bool {
        let (identities, roots) = self.tls_read();
        identities.iter().any(|i| i.changed())
            || roots.iter().any(|r| r.changed())
            || self.keys_read().any(|k| k.changed())
            || self
                .database_roots()
                .any(|(path, read)| crate::tls::file_changed(path, read))
    }
}
