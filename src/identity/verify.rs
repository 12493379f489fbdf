//! Verifying one request's token ([`Verifier::verify`]): taken from its header (exactly one
//! value; `Bearer <token>` in `Authorization`), its algorithm one the identity allows, its
//! signature checked with a key of that algorithm's family (by `kid` when it names one), then
//! `exp`, `nbf`, `iss` and `aud`. The claims come back as JSON; nothing in the token's header
//! (`jku`, `jwk`, `x5u`) is ever followed.

use std::net::IpAddr;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use super::cache::TokenCache;
use super::config::{IdentityConfig, KeySource};
use super::jwks::Jwks;
use super::keys::KeySet;
use super::refusals::Refusals;
use crate::telemetry::IdentityCounters;

/// A verified token's claims.
pub(crate) type Claims = Arc<Map<String, Value>>;

/// Why a request's token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TokenError {
    /// No token (or the header twice, or another scheme than `Bearer`).
    #[error("no bearer token")]
    Missing,
    /// The token is refused; the reason is for logs, never sent.
    #[error("invalid token: {0}")]
    Invalid(&'static str),
    /// The keys are not known yet (`jwks_url` never fetched): not the client's fault.
    #[error("the identity's keys are unavailable")]
    KeysUnavailable,
    /// Not checked: the client's address had too many tokens refused lately, and may have
    /// one checked again after this wait ([`Refusals`]).
    #[error("not checked: too many tokens refused from this address lately")]
    Throttled(std::time::Duration),
}

/// Where a verifier's keys are.
#[derive(Debug)]
enum Keys {
    Read(Arc<KeySet>),
    Fetched(Arc<Jwks>),
}

/// One identity's verifier, built from its config when a generation is.
#[derive(Debug)]
pub(crate) struct Verifier {
    config: Arc<IdentityConfig>,
    keys: Keys,
    /// One validation per allowed algorithm (jsonwebtoken checks its family against the key's).
    validations: Vec<(Algorithm, Validation)>,
    /// Tokens verified already (`token_cache`).
    cache: Option<TokenCache>,
    /// Tokens refused by address (`refused_per_address`).
    refusals: Refusals,
    /// Each token's outcome.
    counters: IdentityCounters,
}

impl Verifier {
    /// The verifier of `config`; a `jwks_url` starts being fetched now. `Err` says why its
    /// TLS cannot be set up.
    /// `previous` (the identity's verifier before a reload) lends its fetched set when the
    /// `jwks_url` settings are the same: a reload that changes `audience` or `leeway` keeps the
    /// keys, even while the issuer is unreachable. With the same URL but other settings (a
    /// rotated client certificate, another `jwks_refresh`), a new fetcher starts from them.
    pub(crate) fn new(
        config: Arc<IdentityConfig>,
        previous: Option<&Verifier>,
        counters: IdentityCounters,
    ) -> Result<Self, String> {
        super::crypto::install().map_err(str::to_owned)?;
        let before = |url: &super::config::JwksUrl| match previous.map(|p| &p.keys) {
            Some(Keys::Fetched(jwks)) if jwks.settings().url == url.url => Some(jwks),
            _ => None,
        };
        let keys = match &config.keys {
            KeySource::Read(read) => Keys::Read(Arc::clone(&read.set)),
            KeySource::Url(url) => match before(url) {
                // The same settings: the same fetcher, its set and its schedule.
                Some(jwks) if jwks.settings() == &**url => Keys::Fetched(Arc::clone(jwks)),
                // The same URL fetched otherwise (its TLS files changed): a new fetcher that
                // starts from the keys fetched so far.
                seed => Keys::Fetched(Jwks::start(
                    &config.name,
                    url,
                    counters.clone(),
                    seed.map(Arc::as_ref),
                )?),
            },
        };
        let validations = config
            .algorithms
            .iter()
            .map(|&alg| {
                let mut v = Validation::new(alg);
                v.set_issuer(&config.issuer);
                v.set_audience(&config.audience);
                v.set_required_spec_claims(&["exp", "iss", "aud"]);
                v.leeway = config.leeway.as_secs();
                v.validate_nbf = true;
                (alg, v)
            })
            .collect();
        Ok(Self {
            cache: TokenCache::new(config.token_cache, config.leeway),
            refusals: Refusals::new(&config.refused_per_address),
            config,
            keys,
            validations,
            counters,
        })
    }

    /// The config it was built from.
    pub(crate) fn config(&self) -> &Arc<IdentityConfig> {
        &self.config
    }

    /// The identity's key set now (none while a `jwks_url` was never fetched).
    fn current_keys(&self) -> Option<Arc<KeySet>> {
        match &self.keys {
            Keys::Read(set) => Some(Arc::clone(set)),
            Keys::Fetched(jwks) => jwks.current(),
        }
    }

    /// Tokens remembered now.
    #[cfg(test)]
    pub(crate) fn cached(&self) -> usize {
        self.cache.as_ref().map_or(0, TokenCache::len)
    }

    /// The request's token (owned, so the verification's future borrows no request).
    pub(crate) fn token(&self, headers: &http::HeaderMap) -> Option<String> {
        token(headers, &self.config.header).map(str::to_owned)
    }

    /// The claims of a request's token ([`Verifier::token`]) from `address` (the client as
    /// limits count it), its outcome counted. A token the cache does not hold is checked only
    /// while its address has not had too many refused ([`Refusals`]).
    pub(crate) async fn verify(
        &self,
        token: Option<&str>,
        address: IpAddr,
    ) -> Result<Claims, TokenError> {
        let Some(token) = token else {
            self.counters.missing.inc();
            return Err(TokenError::Missing);
        };
        if let Some(cache) = &self.cache
            && let Some(claims) = cache.get(token, self.current_keys().as_ref())
        {
            self.counters.remembered.inc();
            return Ok(claims);
        }
        if let Some(wait) = self.refusals.wait(address) {
            self.counters.throttled.inc();
            return Err(TokenError::Throttled(wait));
        }
        let checked = self.check(token).await;
        match &checked {
            Ok(_) => &self.counters.verified,
            Err(TokenError::KeysUnavailable) => &self.counters.keys_unavailable,
            Err(_) => {
                self.refusals.refused(address);
                &self.counters.refused
            }
        }
        .inc();
        checked
    }

    /// The claims of a token the cache does not hold: its signature and claims checked.
    async fn check(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| TokenError::Invalid("not a JWS compact token"))?;
        let (alg, validation) = self
            .validations
            .iter()
            .find(|(alg, _)| *alg == header.alg)
            .ok_or(TokenError::Invalid("signed with an algorithm not allowed"))?;
        let kid = header.kid.as_deref();
        let set = match &self.keys {
            Keys::Read(set) => Arc::clone(set),
            Keys::Fetched(jwks) => {
                let current = jwks.current();
                let known = |set: &KeySet| {
                    kid.is_none_or(|kid| set.names(kid))
                        && set.candidates(*alg, kid).next().is_some()
                };
                match current {
                    Some(set) if known(&set) => set,
                    // A `kid` the set lacks (even when keys naming none could be tried), or no
                    // key to try: the issuer may have rotated keys. At most one fetch every
                    // `jwks_min_refresh`; the set as it is in between.
                    _ => jwks.refetch().await.ok_or(TokenError::KeysUnavailable)?,
                }
            }
        };
        let mut refused = TokenError::Invalid("no key of its kid and algorithm");
        for key in set.candidates(*alg, kid) {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, validation) {
                Ok(data) => {
                    let claims = Arc::new(data.claims);
                    if let Some(cache) = &self.cache {
                        cache.put(token, &claims, &set);
                    }
                    return Ok(claims);
                }
                Err(e) => refused = TokenError::Invalid(reason(e.kind())),
            }
        }
        Err(refused)
    }
}

/// The one token of `name` (`Bearer <token>` in `Authorization`; there or in another header).
pub(super) fn token<'a>(headers: &'a http::HeaderMap, name: &http::HeaderName) -> Option<&'a str> {
    // Two tokens are ambiguous: which one did the client mean, which one would the backend
    // read?
    let value = crate::client_addr::single_header(headers, name)?
        .to_str()
        .ok()?
        .trim();
    let bearer = value
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case("bearer "))
        .map(|_| value[7..].trim_start());
    let token = match bearer {
        Some(token) => token,
        None if *name == http::header::AUTHORIZATION => return None,
        None => value,
    };
    (!token.is_empty()).then_some(token)
}

/// A log line's reason for a refused token.
fn reason(kind: &jsonwebtoken::errors::ErrorKind) -> &'static str {
    use jsonwebtoken::errors::ErrorKind as K;
    match kind {
        K::InvalidSignature => "bad signature",
        K::ExpiredSignature => "expired",
        K::ImmatureSignature => "not valid yet (nbf)",
        K::InvalidIssuer => "wrong issuer",
        K::InvalidAudience => "wrong audience",
        K::MissingRequiredClaim(_) => "missing exp, iss or aud",
        K::InvalidClaimFormat(_) => "a claim of the wrong type",
        K::InvalidAlgorithm => "an algorithm its key does not allow",
        _ => "malformed",
    }
}
