//! Identities' metrics: each token's outcome (remembered, verified, refused, missing, keys
//! unavailable) and each `jwks_url` fetch's (a new set, the same set kept, failed), by
//! identity name — Envoy's `jwt_authn` counts the same (`jwt_cache_hit`, `jwks_fetch_failed`).
//! A flood of junk tokens shows as `refused` growing; a token cache too small for the clients,
//! as `verified` growing with `remembered` flat.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    /// From the config, never a client's.
    identity: String,
    outcome: &'static str,
}

/// The identities' families.
#[derive(Debug)]
pub(crate) struct Identities {
    tokens: Family<OutcomeLabels, Counter>,
    fetches: Family<OutcomeLabels, Counter>,
}

impl Identities {
    /// The families, registered in `registry`.
    pub(crate) fn new(registry: &mut Registry) -> Self {
        let tokens = Family::<OutcomeLabels, Counter>::default();
        let fetches = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "identity_tokens",
            "Tokens an identity checked, by identity and outcome: remembered (token_cache), verified (signature checked), refused, missing, keys_unavailable (jwks_url never fetched), throttled (not checked: its address had refused_per_address tokens refused)",
            tokens.clone(),
        );
        registry.register(
            "jwks_fetches",
            "Fetches of an identity's jwks_url, by identity and outcome: changed (a new set), unchanged (the same body: set and remembered tokens kept), failed (the last good set kept)",
            fetches.clone(),
        );
        Self { tokens, fetches }
    }

    /// The counters of identity `name`, resolved once when its verifier is built.
    pub(crate) fn counters(&self, name: &str) -> IdentityCounters {
        let token = |outcome| self.tokens.get_or_create(&labels(name, outcome)).clone();
        let fetch = |outcome| self.fetches.get_or_create(&labels(name, outcome)).clone();
        IdentityCounters {
            remembered: token("remembered"),
            verified: token("verified"),
            refused: token("refused"),
            missing: token("missing"),
            keys_unavailable: token("keys_unavailable"),
            throttled: token("throttled"),
            fetch_changed: fetch("changed"),
            fetch_unchanged: fetch("unchanged"),
            fetch_failed: fetch("failed"),
        }
    }
}

fn labels(identity: &str, outcome: &'static str) -> OutcomeLabels {
    OutcomeLabels {
        identity: identity.to_owned(),
        outcome,
    }
}

/// One identity's counters; [`Default`] gives detached ones (for a verifier built without
/// metrics, as in unit tests).
#[derive(Clone, Debug, Default)]
pub(crate) struct IdentityCounters {
    /// A token the cache held.
    pub(crate) remembered: Counter,
    /// A token whose signature and claims were checked, and passed.
    pub(crate) verified: Counter,
    /// A token that did not verify.
    pub(crate) refused: Counter,
    /// No token.
    pub(crate) missing: Counter,
    /// The keys were not known yet.
    pub(crate) keys_unavailable: Counter,
    /// Not checked: its address had `refused_per_address` tokens refused lately.
    pub(crate) throttled: Counter,
    /// A fetch that found another set.
    pub(crate) fetch_changed: Counter,
    /// A fetch that found the same body.
    pub(crate) fetch_unchanged: Counter,
    /// A fetch that failed.
    pub(crate) fetch_failed: Counter,
}
