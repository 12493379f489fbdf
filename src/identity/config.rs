//! The typed config of one identity (`identities.NAME`): where its token is, what verifies it
//! (algorithms, issuer, audience, leeway) and where its keys come from.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;

use super::keys::KeySet;

/// Default `leeway`: clock skew allowed on `exp` and `nbf`.
pub(crate) const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// Longest `leeway`.
pub(crate) const MAX_LEEWAY: Duration = Duration::from_secs(300);
/// Default `jwks_refresh`: how often a `jwks_url` is fetched again.
pub(crate) const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(600);
/// Default `jwks_min_refresh`: a token naming an unknown `kid` fetches the set again at most
/// this often.
pub(crate) const DEFAULT_JWKS_MIN_REFRESH: Duration = Duration::from_secs(60);
/// Default `token_cache`: verified tokens remembered, so a client's next request with the same
/// token costs no signature check (Envoy's `jwt_cache_config` keeps 100).
pub(crate) const DEFAULT_TOKEN_CACHE: usize = 1000;
/// Largest `token_cache`: an entry holds its token (at most [`MAX_CACHED_TOKEN`]) and its
/// claims, about 2.6 times the token's size in all (`bench/identity.sh`), so this bounds it
/// near a gigabyte even with the longest tokens.
pub(crate) const MAX_TOKEN_CACHE: u64 = 100_000;
/// Longest token remembered (bytes); longer ones are verified every time, so one entry holds
/// at most a few KiB.
pub(crate) const MAX_CACHED_TOKEN: usize = 4096;
/// Default `refused_per_address`: tokens one address may have refused (10 a second, 20 at
/// once) before its next tokens wait, unchecked ([`super::refusals`]). Clients with good tokens
/// never spend it; one whose token expired is refused a few times before it fetches another.
pub(crate) const DEFAULT_REFUSED_PER_ADDRESS: RefusalBudget = RefusalBudget {
    requests: NonZeroU32::new(10).expect("nonzero"),
    per: Duration::from_secs(1),
    burst: NonZeroU32::new(20).expect("nonzero"),
};
/// Shortest HMAC secret (`secret_env`): RFC 7518 §3.2 asks for at least the hash's size.
pub(crate) const MIN_HMAC_SECRET: usize = 32;

/// One verified identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityConfig {
    /// Its name in `identities`.
    pub name: String,
    /// The header the token is in (`Authorization` by default, `Bearer <token>` there).
    pub header: http::HeaderName,
    /// Algorithms a token may be signed with.
    pub algorithms: Vec<Algorithm>,
    /// Accepted `iss` values.
    pub issuer: Vec<String>,
    /// Accepted `aud` values (one must be in the token's).
    pub audience: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// Where its keys come from.
    pub keys: KeySource,
    /// How many verified tokens are remembered (0: none).
    pub token_cache: usize,
    /// Tokens one address may have refused before its next ones wait, unchecked.
    pub refused_per_address: RefusalBudget,
}

/// `refused_per_address`: `requests` refused tokens per `per` for each address, `burst` at
/// once (a rate's form, as limits write it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusalBudget {
    pub requests: NonZeroU32,
    pub per: Duration,
    pub burst: NonZeroU32,
}

/// Where an identity's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// Read with the config (`jwks_file`, `public_key_file`, `secret_env`): a reload reads
    /// them again.
    Read(ReadKeys),
    /// Fetched from `jwks_url`, kept while a fetch fails.
    Url(Box<JwksUrl>),
}

/// Keys read with the config.
#[derive(Debug, Clone)]
pub struct ReadKeys {
    /// The file they came from (none for `secret_env`).
    pub file: Option<PathBuf>,
    /// SHA-256 of what was read: equal configs hold equal keys.
    pub fingerprint: [u8; 32],
    /// The keys.
    pub(crate) set: Arc<KeySet>,
}

impl PartialEq for ReadKeys {
    fn eq(&self, other: &Self) -> bool {
        self.file == other.file && self.fingerprint == other.fingerprint
    }
}

impl Eq for ReadKeys {}

impl ReadKeys {
    /// Whether the file now differs from what was read (or cannot be read now).
    pub(crate) fn changed(&self) -> bool {
        self.file
            .as_ref()
            .is_some_and(|file| crate::tls::file_changed(file, &self.fingerprint))
    }
}

/// A JWK set fetched over HTTPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksUrl {
    /// The `https://` URL.
    pub url: http::Uri,
    /// The TLS the fetch verifies the server with (`tls.ca_file`, `server_name`, a client
    /// certificate), as an upstream's.
    pub(crate) tls: crate::tls::UpstreamTls,
    /// How often the set is fetched again.
    pub refresh: Duration,
    /// A token naming an unknown `kid` fetches the set again at most this often.
    pub min_refresh: Duration,
}
