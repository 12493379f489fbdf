//! `limits.pace` → [`Pace`]: bytes a second and whose bucket.

use std::num::NonZeroU32;

use serde_saphyr::Spanned;

use super::Problems;
use crate::config::file::{FilePace, FilePaceScope};
use crate::limit::config::{Pace, PaceScope};

/// The slowest pace: below it a response is hardly a response (1 KiB a second).
const MIN_PACE: u64 = 1024;

/// The fastest pace a bucket counts (it counts in `u32`), in a unit a message can name.
const MAX_PACE: u64 = 4095 << 20;

/// `pace`: `bytes_per_second` (a size such as `2MiB`) and `per` (default `client`).
pub(super) fn pace(p: &mut Problems, at: &Spanned<FilePace>) -> Pace {
    let f = &at.value;
    let bytes = p.size(
        Some(&f.bytes_per_second),
        "bytes_per_second",
        MIN_PACE,
        (MIN_PACE, MAX_PACE),
        "a pace is bytes a second; ",
    );
    let bytes_per_second = u32::try_from(bytes)
        .ok()
        .and_then(NonZeroU32::new)
        .unwrap_or(NonZeroU32::MIN);
    let per = match f.per.as_ref().map(|s| s.value) {
        // The address by default: with `key: header`, a client that rotates header values
        // would get a bucket per value.
        None | Some(FilePaceScope::Client) => PaceScope::Client,
        Some(FilePaceScope::Key) => PaceScope::Key,
        Some(FilePaceScope::Route) => PaceScope::Route,
    };
    Pace {
        bytes_per_second,
        per,
    }
}
