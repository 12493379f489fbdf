//! Verified tokens remembered by their text (`identities.NAME.token_cache`), as Envoy's
//! `jwt_cache_config` does: a client's next request with the same token costs a lookup
//! instead of a signature check (tens of microseconds for RSA and ECDSA keys). Only tokens
//! that verified are stored, so junk cannot fill it; each hit checks `exp` again (with the
//! leeway), and an entry verified under another key set than the identity's current one (a
//! JWKS that changed) is verified again. Tokens over [`MAX_CACHED_TOKEN`] bytes are not kept.

use std::sync::Arc;
use std::time::Duration;

use super::config::MAX_CACHED_TOKEN;
use super::keys::KeySet;
use super::verify::Claims;

/// An identity's remembered tokens.
pub(super) struct TokenCache {
    entries: quick_cache::sync::Cache<Box<str>, Entry>,
    leeway: u64,
}

/// What a verified token gave, until when, under which keys.
#[derive(Clone)]
struct Entry {
    claims: Claims,
    /// Its `exp` (seconds since the epoch).
    exp: u64,
    /// The set that verified it (held, so a new set is never mistaken for it).
    set: Arc<KeySet>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("capacity", &self.entries.capacity())
            .field("len", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl TokenCache {
    /// Room for `capacity` tokens; none for 0.
    pub(super) fn new(capacity: usize, leeway: Duration) -> Option<Self> {
        (capacity > 0).then(|| Self {
            entries: quick_cache::sync::Cache::new(capacity),
            leeway: leeway.as_secs(),
        })
    }

    /// The claims of `token` when it verified under `current` (the identity's key set now)
    /// and has not expired since.
    pub(super) fn get(&self, token: &str, current: Option<&Arc<KeySet>>) -> Option<Claims> {
        let hit = self.entries.get(token)?;
        let same_keys = current.is_some_and(|set| Arc::ptr_eq(set, &hit.set));
        // As jsonwebtoken checks it: expired when `exp` is before now less the leeway.
        if same_keys && hit.exp.saturating_add(self.leeway) >= jsonwebtoken::get_current_timestamp()
        {
            return Some(hit.claims);
        }
        // Only this stale entry: another request may have put a fresh one meanwhile.
        self.entries
            .remove_if(token, |entry| Arc::ptr_eq(&entry.claims, &hit.claims));
        None
    }

    /// Remembers `token`, which `set` verified just now into `claims`.
    pub(super) fn put(&self, token: &str, claims: &Claims, set: &Arc<KeySet>) {
        // `exp` is required, so a verified token has one; one that is not a whole number
        // (jsonwebtoken takes a fraction too) is simply not kept.
        let Some(exp) = claims.get("exp").and_then(serde_json::Value::as_u64) else {
            return;
        };
        if token.len() > MAX_CACHED_TOKEN {
            return;
        }
        let entry = Entry {
            claims: Arc::clone(claims),
            exp,
            set: Arc::clone(set),
        };
        self.entries.insert(Box::from(token), entry);
    }

    /// Tokens remembered now.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}
