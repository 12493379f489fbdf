//! The one place a next cursor is minted, with its `Link: <…>; rel="next"` header: list routes
//! in front of a backend (`list::guard`) and table pages (`table::page`) both call
//! [`next_page`].

use std::time::SystemTime;

use http::HeaderValue;
use serde_json::value::RawValue;

use super::{CursorCodec, MAX_KEY_JSON_LEN, key_json_len};

/// The next page: its cursor, and the `Link` header that points at it.
#[derive(Debug)]
pub(crate) struct NextPage {
    /// The signed cursor.
    pub(crate) cursor: String,
    /// `<{base}{cursor}>; rel="next"` (RFC 8288); `None` if `base` cannot be a header.
    pub(crate) link: Option<HeaderValue>,
}

/// The page's last key is longer than a cursor carries ([`MAX_KEY_JSON_LEN`] bytes of JSON):
/// no cursor is minted, since `decode` would refuse it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyTooLong {
    /// The index of the longest key value, for the message that names it.
    pub(crate) longest: usize,
}

/// Mints the cursor of the page after the one whose last item's key is `key` (raw JSON values,
/// copied byte for byte) for `route` and `binding`, and its link: `base` is the next page's URL
/// up to the cursor's value (`/events?limit=50&cursor=`).
pub(crate) fn next_page(
    codec: &CursorCodec,
    (route, binding): (u64, u64),
    key: &[&RawValue],
    base: &str,
    now: SystemTime,
) -> Result<NextPage, KeyTooLong> {
    if key_json_len(key) > MAX_KEY_JSON_LEN {
        let longest = (0..key.len())
            .max_by_key(|i| key[*i].get().len())
            .unwrap_or(0);
        return Err(KeyTooLong { longest });
    }
    let cursor = codec.encode(route, binding, key, now);
    let link = HeaderValue::from_str(&format!("<{base}{cursor}>; rel=\"next\"")).ok();
    Ok(NextPage { cursor, link })
}
