//! Request ids: a trusted proxy's `X-Request-Id` kept when it is sane, else a new one that is
//! cheap to make and unique within the process.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};

use super::{MAX_REQUEST_ID_LEN, REQUEST_ID_NAME};

/// Keeps one sane `X-Request-Id` (at most 128 letters, digits and `-_.:`, as UUIDs and
/// tracing ids are written) when `keep` (the peer is a trusted proxy), or sets a new one;
/// returns it. Anything else — two ids, quotes,
/// spaces, slashes — is replaced, so an id is always safe to log and to pass on.
pub(super) fn request_id(headers: &mut HeaderMap, keep: bool) -> HeaderValue {
    let mut kept = headers.get_all(&REQUEST_ID_NAME).iter();
    if let (true, Some(value), None) = (keep, kept.next(), kept.next()) {
        let bytes = value.as_bytes();
        if !bytes.is_empty()
            && bytes.len() <= MAX_REQUEST_ID_LEN
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
        {
            return value.clone();
        }
    }
    let id = new_request_id();
    headers.insert(REQUEST_ID_NAME, id.clone());
    id
}

/// A new id: 16 hex digits drawn at start-up (so ids differ across processes and restarts),
/// then a 16-digit counter. Unique within a process, never reused, and cheap: no clock, no RNG
/// per request.
pub(super) fn new_request_id() -> HeaderValue {
    static PREFIX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| RandomState::new().hash_one(std::process::id()));
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut text = [0u8; 32];
    for (i, byte) in text.iter_mut().enumerate() {
        let word = if i < 16 { prefix } else { n };
        let nibble = (word >> (60 - 4 * (i % 16))) & 0xf;
        *byte = b"0123456789abcdef"[nibble as usize];
    }
    // Owned by a shared buffer: the value is cloned into the request, the response and the log
    // entry, each clone a reference count (a copied slice would be copied again on its first).
    HeaderValue::from_maybe_shared(Bytes::from_owner(text))
        .unwrap_or_else(|_| HeaderValue::from_static("-"))
}
