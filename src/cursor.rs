//! Signed keyset cursors: opaque next-page tokens that cannot be forged or moved.
//!
//! When a keyset route returns a full page, pagegate mints a cursor from the sort key of the
//! page's last item; when the client sends that cursor back, pagegate verifies it and forwards
//! the key values to the backend (`id_gt=…`). The cursor is the only state: nothing is stored.
//!
//! # Layout (version 1)
//!
//! ```text
//! base64url_nopad( ver:u8=1 | kid:u8 | route:u64be | binding:u64be | expires_at:u64be | key_json | tag:16 )
//! tag = HMAC-SHA256(secret[kid], every byte before the tag)[..16]
//! ```
//!
//! `route` is [`route_id`] of the route that minted the cursor ([`keyset_id`] on a proxied
//! list route, which also covers its key fields and order) and `binding` is
//! [`binding_hash`] of the request's other query parameters, so a cursor only works on the route
//! and with the filters it was issued for. `expires_at` is in unix seconds (`0`: never).
//! `key_json` is a compact JSON array of the raw key values, e.g. `["2026-01-01T00:00:03Z",17]`:
//! values are copied byte for byte, so big integers and timestamps come back exactly as the
//! backend wrote them.
//!
//! # Integrity, not confidentiality
//!
//! The HMAC tag proves that this pagegate minted the cursor and that no byte changed since; it
//! hides nothing. Anyone can base64-decode a cursor and read the key values, which the client
//! has already seen in the last item of the page. Do not page by secret columns.
//!
//! # Key rotation
//!
//! Every cursor names the id of the key that signed it. [`CursorCodec`] signs with the newest
//! key (the last one configured) and verifies with any configured key: add a new key at the
//! end, and remove the old one once its cursors no longer matter (after the TTL, if set).
//! Cursors signed with a removed key fail with [`CursorError::UnknownKeyId`].
//!
//! Decoding checks, in order: length cap, base64, version, key id, tag (in constant time), and
//! only then the signed fields: expiry, route, filters, and the shape of the key values.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

mod error;
mod next;

pub use error::CursorError;
pub(crate) use next::{NextPage, next_page};

/// Largest encoded cursor accepted, in bytes (checked before any decoding): room for about
/// 3 KB of key values ([`MAX_KEY_JSON_LEN`]), so a text key of a few thousand characters still
/// pages, while a cursor stays well inside a request head.
pub const MAX_CURSOR_LEN: usize = 4096;

/// The cursor format version this module writes and reads.
pub(crate) const CURSOR_VERSION: u8 = 1;

/// Bytes before `key_json`: version, key id, route, binding, expiry.
const HEADER_LEN: usize = 2 + 3 * 8;

/// Bytes of the (truncated) HMAC-SHA256 tag.
const TAG_LEN: usize = 16;

/// Longest `key_json` (the key values, with brackets and commas) whose cursor still fits in
/// [`MAX_CURSOR_LEN`]. [`CursorCodec::encode`] mints longer cursors, but `decode` refuses them
/// ([`CursorError::TooLong`]): callers should not offer a next page for such keys.
pub(crate) const MAX_KEY_JSON_LEN: usize = MAX_CURSOR_LEN / 4 * 3 - HEADER_LEN - TAG_LEN;

/// The length of `key_json` for `key`: its values, two brackets and the commas between.
#[must_use]
pub(crate) fn key_json_len(key: &[&RawValue]) -> usize {
    key.iter().map(|v| v.get().len()).sum::<usize>() + key.len().max(1) + 1
}

type HmacSha256 = Hmac<Sha256>;

/// One signing secret. `id` goes into the cursor so old cursors verify after rotation.
#[derive(Clone, PartialEq, Eq)]
pub struct CursorKey {
    /// Key id written into every cursor this key signs.
    pub id: u8,
    /// The HMAC secret (any length is accepted here; the config requires at least 32 bytes).
    pub secret: Vec<u8>,
}

impl fmt::Debug for CursorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CursorKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A key ready to sign: the HMAC state after absorbing the secret.
#[derive(Clone)]
struct Signer {
    id: u8,
    mac: HmacSha256,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Mints and verifies cursors. Signs with the newest key (the last one given), verifies with any.
/// Two codecs are equal when made from the same keys and lifetime: they mint the same cursors.
#[derive(Clone, Debug)]
pub struct CursorCodec {
    signing: Signer,
    verifying: Vec<Signer>,
    ttl: Option<Duration>,
    /// What it was made from, for equality (a MAC's state cannot be compared).
    keys: Vec<CursorKey>,
}

impl PartialEq for CursorCodec {
    fn eq(&self, other: &Self) -> bool {
        self.keys == other.keys && self.ttl == other.ttl
    }
}

impl Eq for CursorCodec {}

impl CursorCodec {
    /// A codec over `keys` (oldest first) whose cursors expire `ttl` after minting (`None`: never;
    /// sub-second parts round up). Returns `None`, and never panics, if `keys` is empty or two
    /// keys share an id. Secrets are not length-checked here.
    #[must_use]
    pub fn new(keys: Vec<CursorKey>, ttl: Option<Duration>) -> Option<Self> {
        let mut verifying: Vec<Signer> = Vec::with_capacity(keys.len());
        for key in &keys {
            if verifying.iter().any(|s| s.id == key.id) {
                return None;
            }
            let mac = HmacSha256::new_from_slice(&key.secret).ok()?;
            verifying.push(Signer { id: key.id, mac });
        }
        let signing = verifying.last()?.clone();
        Some(Self {
            signing,
            verifying,
            ttl,
            keys,
        })
    }

    /// Mints a cursor for `route` ([`route_id`]) and `binding` ([`binding_hash`]) carrying `key`,
    /// the raw JSON key values (1 or 2 of them) of the page's last item, copied byte for byte.
    /// Keys longer than [`MAX_KEY_JSON_LEN`] in total give a cursor `decode` refuses.
    #[must_use]
    pub fn encode(&self, route: u64, binding: u64, key: &[&RawValue], now: SystemTime) -> String {
        let expires_at = self.ttl.map_or(0, |ttl| {
            unix_seconds(now).saturating_add(ceil_secs(ttl)).max(1)
        });
        let key_len: usize = key.iter().map(|v| v.get().len() + 1).sum();
        let mut bytes = Vec::with_capacity(HEADER_LEN + key_len + 1 + TAG_LEN);
        bytes.extend_from_slice(&[CURSOR_VERSION, self.signing.id]);
        bytes.extend_from_slice(&route.to_be_bytes());
        bytes.extend_from_slice(&binding.to_be_bytes());
        bytes.extend_from_slice(&expires_at.to_be_bytes());
        bytes.push(b'[');
        for (i, value) in key.iter().enumerate() {
            if i > 0 {
                bytes.push(b',');
            }
            bytes.extend_from_slice(value.get().as_bytes());
        }
        bytes.push(b']');
        let tag = self.signing.mac.clone().chain_update(&bytes).finalize();
        bytes.extend(tag.into_bytes().iter().take(TAG_LEN));
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Verifies and opens a cursor: length cap, base64, version, known key id, tag (constant
    /// time), then expiry (at `now`), route and binding; then the key values must be a JSON array
    /// of exactly `arity` scalars (numbers or strings). Returns the raw values, byte-exact.
    ///
    /// # Errors
    ///
    /// The first check that fails, as the matching [`CursorError`].
    pub fn decode(
        &self,
        cursor: &str,
        route: u64,
        binding: u64,
        arity: usize,
        now: SystemTime,
    ) -> Result<Vec<Box<RawValue>>, CursorError> {
        if cursor.len() > MAX_CURSOR_LEN {
            return Err(CursorError::TooLong {
                len: cursor.len(),
                max: MAX_CURSOR_LEN,
            });
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(cursor)
            .map_err(|_| CursorError::NotBase64)?;
        let Some(&version) = bytes.first() else {
            return Err(CursorError::Truncated);
        };
        if version != CURSOR_VERSION {
            return Err(CursorError::UnsupportedVersion(version));
        }
        let (signed, tag) = bytes
            .split_last_chunk::<TAG_LEN>()
            .ok_or(CursorError::Truncated)?;
        let mut key_json = signed;
        let [_version, kid] = take(&mut key_json).ok_or(CursorError::Truncated)?;
        let mut field = || take(&mut key_json).map(u64::from_be_bytes);
        let (Some(signed_route), Some(signed_binding), Some(expires_at)) =
            (field(), field(), field())
        else {
            return Err(CursorError::Truncated);
        };
        let verifier = self
            .verifying
            .iter()
            .find(|s| s.id == kid)
            .ok_or(CursorError::UnknownKeyId(kid))?;
        verifier
            .mac
            .clone()
            .chain_update(signed)
            .verify_truncated_left(tag)
            .map_err(|_| CursorError::BadSignature)?;

        // Everything below is signed by us: the checks are about where the cursor is used.
        if expires_at != 0 && unix_seconds(now) >= expires_at {
            return Err(CursorError::Expired {
                expired_at: expires_at,
            });
        }
        // Minted before `ttl` was set, or while it was longer: no cursor outlives the ttl in
        // force, so turning it on (or down) bounds the cursors already out there too. Another
        // replica's clock may run ahead by up to `CURSOR_CLOCK_SKEW`.
        if let Some(ttl) = self.ttl {
            let latest = unix_seconds(now)
                .saturating_add(ceil_secs(ttl))
                .saturating_add(crate::config::defaults::CURSOR_CLOCK_SKEW.as_secs());
            if expires_at == 0 || expires_at > latest {
                return Err(CursorError::Outlived);
            }
        }
        if signed_route != route {
            return Err(CursorError::WrongRoute);
        }
        if signed_binding != binding {
            return Err(CursorError::WrongFilters);
        }
        let bad_key = CursorError::BadKey { expected: arity };
        let values: Vec<Box<RawValue>> =
            serde_json::from_slice(key_json).map_err(|_| bad_key.clone())?;
        if values.len() != arity || !values.iter().all(|v| is_scalar(v)) {
            return Err(bad_key);
        }
        Ok(values)
    }
}

/// Splits `N` bytes off the front of `bytes`.
fn take<const N: usize>(bytes: &mut &[u8]) -> Option<[u8; N]> {
    let (head, rest) = bytes.split_first_chunk::<N>()?;
    *bytes = rest;
    Some(*head)
}

/// A JSON number or string (raw values never carry surrounding whitespace).
/// Whether a raw JSON value is one cursors carry: a string or a number.
pub(crate) fn is_scalar(value: &RawValue) -> bool {
    matches!(
        value.get().as_bytes().first(),
        Some(b'"' | b'-' | b'0'..=b'9')
    )
}

/// A duration in whole seconds, rounded up (as `encode` counts a ttl).
fn ceil_secs(ttl: Duration) -> u64 {
    ttl.as_secs()
        .saturating_add(u64::from(ttl.subsec_nanos() > 0))
}

/// Whole seconds since the unix epoch; times before it count as 0.
fn unix_seconds(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Hashes `part` preceded by its length, so no piece can run into the next.
fn framed(hasher: &mut Sha256, part: &str) {
    hasher.update((part.len() as u64).to_be_bytes());
    hasher.update(part.as_bytes());
}

/// The first 8 bytes of a digest, big-endian.
fn prefix_u64(digest: &[u8]) -> u64 {
    digest.first_chunk().map_or(0, |b| u64::from_be_bytes(*b))
}

/// Stable 64-bit id of a route: first 8 bytes (big-endian) of SHA-256(`"pagegate-route\0"` +
/// name). Renaming a route invalidates its outstanding cursors.
#[must_use]
pub fn route_id(route_name: &str) -> u64 {
    let digest = Sha256::new()
        .chain_update(b"pagegate-route\0")
        .chain_update(route_name.as_bytes())
        .finalize();
    prefix_u64(&digest)
}

/// Stable 64-bit id of a proxied list route's keyset: SHA-256 over `"pagegate-keyset\0"`, the
/// route's name and each piece of `definition` (its key fields, their parameters, the order and
/// the parameters always sent), each framed by its length; first 8 bytes big-endian. A cursor
/// minted before the definition changed is refused ([`CursorError::WrongRoute`]): forwarded under
/// the new definition, the same values would mean another place in the list.
#[must_use]
pub fn keyset_id(route_name: &str, definition: &[&str]) -> u64 {
    let mut hasher = Sha256::new().chain_update(b"pagegate-keyset\0");
    for part in std::iter::once(&route_name).chain(definition) {
        framed(&mut hasher, part);
    }
    prefix_u64(&hasher.finalize())
}

/// Stable 64-bit hash of what a list is (a cursor is only valid on the same list): `bound`,
/// what the request does not choose by its query (the path; a table route's table, key and
/// scope), in its order, then the request's other query parameters.
///
/// `pairs` are the raw, still percent-encoded `name=value` pieces in request order, without the
/// cursor and page-size parameters (the caller removes those). Order does not matter (the pieces
/// are sorted) but repetition and spelling do (`a=%41` ≠ `a=A`). Each piece is length-prefixed,
/// so `a=1&b=2` ≠ `a=1%26b%3D2`, and `bound` is counted and hashed apart from the pieces, so a
/// query piece spelled like a path (`?/users/2/events`) cannot trade places with it. SHA-256
/// over `"pagegate-binding\0"`, the count of `bound`, the framed `bound` and the framed
/// pieces, first 8 bytes big-endian.
#[must_use]
pub fn binding_hash<'a>(bound: &[&str], pairs: impl IntoIterator<Item = &'a str>) -> u64 {
    let mut pairs: Vec<&str> = pairs.into_iter().collect();
    pairs.sort_unstable();
    let mut hasher = Sha256::new().chain_update(b"pagegate-binding\0");
    hasher.update((bound.len() as u64).to_be_bytes());
    for part in bound.iter().chain(&pairs) {
        framed(&mut hasher, part);
    }
    prefix_u64(&hasher.finalize())
}

/// A codec with one fixed key, for other modules' unit tests.
#[cfg(test)]
pub(crate) fn test_codec() -> CursorCodec {
    let key = CursorKey {
        id: 1,
        secret: b"0123456789abcdef0123456789abcdef".to_vec(),
    };
    CursorCodec::new(vec![key], None).unwrap_or_else(|| unreachable!("one key is a valid key set"))
}

#[cfg(test)]
mod tests;
