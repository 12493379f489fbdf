//! Verified identities (`identities`): JWTs checked for signature, expiry, issuer and audience
//! before a route's limits run, so limits can key on a claim (`key: {jwt, claim}`) and a table
//! route can scope rows by one (`scope: {jwt, claim, column}`) instead of trusting a header.
//!
//! A route that reads a claim gets the identity gate ([`IdentityLayer`]) right after rescue: a
//! request without a good token is answered 401 with `WWW-Authenticate: Bearer` (403 with
//! `insufficient_scope` for a good token without the claim) before any limit is spent, unless
//! its key says `anonymous: client` — then it is keyed by its address, as if it sent no
//! token.

use std::sync::Arc;

mod cache;
pub(crate) mod config;
mod crypto;
mod jwks;
mod keys;
mod layer;
mod refusals;
mod verify;

pub(crate) use keys::KeySet;
pub(crate) use layer::{Gate, IdentityLayer};
pub(crate) use verify::{TokenError, Verifier};

use verify::Claims;

/// The verified claims of a request's token, in its extensions for the layers below the gate.
#[derive(Debug, Clone)]
pub(crate) struct Verified {
    claims: Claims,
}

impl Verified {
    /// A claim's value as text: a string as it is, a number as JSON writes it. Other types
    /// (objects, arrays, booleans, null) are no key and no scope.
    pub(crate) fn claim(&self, name: &str) -> Option<std::borrow::Cow<'_, str>> {
        match self.claims.get(name)? {
            serde_json::Value::String(s) if !s.is_empty() => Some(s.as_str().into()),
            serde_json::Value::Number(n) => Some(n.to_string().into()),
            _ => None,
        }
    }
}

/// Why the gate refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum IdentityError {
    /// No bearer token.
    #[error("this route needs a bearer token in {0}")]
    Missing(http::HeaderName),
    /// A token that does not verify.
    #[error("the bearer token is invalid, expired, or not meant for this service")]
    Invalid,
    /// A verified token without a claim the route reads (as a string or a number): a new
    /// token from the same issuer would lack it too, so this is no `invalid_token`.
    #[error("the bearer token lacks a claim this route reads")]
    LacksClaim,
    /// The keys are not known yet (`jwks_url` unreachable since start).
    #[error("the keys tokens are verified with are not available yet; retry shortly")]
    KeysUnavailable,
    /// Too many tokens from the client's address were refused lately: its next one is
    /// checked after this many seconds.
    #[error("too many invalid tokens came from this address; retry later with a valid one")]
    Throttled(u64),
}

/// Verifiers by identity name, built with a generation.
pub(crate) type Verifiers = std::collections::BTreeMap<String, Arc<Verifier>>;

#[cfg(test)]
mod tests;
