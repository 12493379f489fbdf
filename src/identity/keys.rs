//! The keys an identity verifies with ([`KeySet`]): a PEM public key, an HMAC secret, or a JWK
//! set (a file's or a URL's), each key with the `kid` and `alg` its set gives it. A token picks
//! its candidates by `kid` and by its algorithm's family; keys of another family are never
//! tried, so a public key can never be used as an HMAC secret.

use std::str::FromStr;

use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};

/// Most keys one set holds: more are refused (a set is a handful of keys in rotation; a
/// token without `kid` is tried against each key of its family).
pub(crate) const MAX_KEYS: usize = 16;

/// Most keys one token is checked against: a token without a `kid` (or one a set's kid-less
/// keys could hold) costs at most this many signature checks, whatever the set holds.
pub(crate) const MAX_CANDIDATES: usize = 3;

/// Most bytes of a JWK set, from a file or a URL.
pub(crate) const MAX_JWKS_BYTES: usize = 1 << 20;

/// One key.
#[derive(Clone)]
pub(crate) struct Key {
    /// `kid`, when the set names it.
    pub(crate) kid: Option<String>,
    /// `alg`, when the set pins it: only that algorithm may use the key.
    pub(crate) alg: Option<Algorithm>,
    /// The key.
    pub(crate) key: DecodingKey,
}

/// The keys one identity verifies with.
#[derive(Clone, Default)]
pub(crate) struct KeySet {
    keys: Vec<Key>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<_> = self.keys.iter().map(|k| k.kid.as_deref()).collect();
        f.debug_struct("KeySet").field("kids", &kids).finish()
    }
}

impl KeySet {
    /// A PEM public key (`BEGIN PUBLIC KEY` or `BEGIN RSA PUBLIC KEY`): RSA, EC or Ed25519.
    pub(crate) fn pem(pem: &[u8]) -> Result<Self, String> {
        let key = DecodingKey::from_rsa_pem(pem)
            .or_else(|_| DecodingKey::from_ec_pem(pem))
            .or_else(|_| DecodingKey::from_ed_pem(pem))
            .map_err(|_| {
                "holds no RSA, EC or Ed25519 public key in PEM (`-----BEGIN PUBLIC KEY-----`): give the issuer's public key, e.g. `openssl pkey -pubout -in private.pem`".to_owned()
            })?;
        Ok(Self::one(key))
    }

    /// An HMAC secret.
    pub(crate) fn secret(secret: &[u8]) -> Result<Self, String> {
        DecodingKey::from_secret(secret)
            .map(Self::one)
            .map_err(|_| "is empty".to_owned())
    }

    fn one(key: DecodingKey) -> Self {
        Self {
            keys: vec![Key {
                kid: None,
                alg: None,
                key,
            }],
        }
    }

    /// A JWK set (`{"keys": [...]}`): keys for signatures only, at most [`MAX_KEYS`]. Keys this
    /// build cannot use (another `kty`, `use: enc`, an encryption `alg`) are skipped and named
    /// in the second value; `Err` when none is left or the JSON is not a set.
    pub(crate) fn jwks(json: &[u8]) -> Result<(Self, Vec<String>), String> {
        #[derive(serde::Deserialize)]
        struct Set {
            keys: Vec<serde_json::Value>,
        }
        if json.len() > MAX_JWKS_BYTES {
            return Err(format!(
                "is over {MAX_JWKS_BYTES} bytes: a JWK set is a few keys"
            ));
        }
        let set: Set = serde_json::from_slice(json)
            .map_err(|e| format!("is not a JWK set (`{{\"keys\": [...]}}`): {e}"))?;
        let mut keys = Vec::new();
        let mut skipped = Vec::new();
        for (i, value) in set.keys.into_iter().enumerate() {
            match Self::jwk(value) {
                Ok(key) => keys.push(key),
                Err(why) => skipped.push(format!("key {i}: {why}")),
            }
        }
        if keys.is_empty() {
            return Err(format!(
                "holds no key pagegate can verify with ({})",
                if skipped.is_empty() {
                    "it is empty".to_owned()
                } else {
                    skipped.join("; ")
                }
            ));
        }
        if keys.len() > MAX_KEYS {
            return Err(format!(
                "holds {} keys: at most {MAX_KEYS} are kept in rotation",
                keys.len()
            ));
        }
        Ok((Self { keys }, skipped))
    }

    fn jwk(value: serde_json::Value) -> Result<Key, String> {
        let jwk: Jwk = serde_json::from_value(value).map_err(|e| e.to_string())?;
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            return Err("`use` is `enc`".to_owned());
        }
        let alg = match &jwk.common.key_algorithm {
            None => None,
            Some(alg) => Some(
                Algorithm::from_str(&alg.to_string())
                    .map_err(|_| format!("`alg` {alg} does not sign"))?,
            ),
        };
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| e.to_string())?;
        if alg.is_some_and(|alg| alg.family() != key.family()) {
            return Err("its `alg` is not of its key type".to_owned());
        }
        Ok(Key {
            kid: jwk.common.key_id,
            alg,
            key,
        })
    }

    /// The keys a token signed with `alg` may be verified with, at most [`MAX_CANDIDATES`]:
    /// of its algorithm's family (and `alg`, when the set pins one), the key its `kid` names
    /// first, then keys that name none (a PEM key, a secret, a set without `kid`s) — a token
    /// with a `kid` is never refused only because the key carries none.
    pub(crate) fn candidates<'a>(
        &'a self,
        alg: Algorithm,
        kid: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Key> + 'a {
        let usable = move |k: &&Key| {
            k.key.family() == alg.family() && k.alg.is_none_or(|pinned| pinned == alg)
        };
        let named = self
            .keys
            .iter()
            .filter(usable)
            .filter(move |k| kid.is_some() && k.kid.as_deref() == kid);
        let others = self
            .keys
            .iter()
            .filter(usable)
            .filter(move |k| kid.is_none() || k.kid.is_none());
        named.chain(others).take(MAX_CANDIDATES)
    }

    /// Whether a key of the set carries `kid`.
    pub(crate) fn names(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// The key families in the set.
    pub(crate) fn families(&self) -> Vec<AlgorithmFamily> {
        let mut families: Vec<_> = Vec::new();
        for key in &self.keys {
            if !families.contains(&key.key.family()) {
                families.push(key.key.family());
            }
        }
        families
    }
}
