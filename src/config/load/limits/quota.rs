//! `limits.quota` → [`QuotaConfig`]: rows or bytes per window, and what an answer that crosses
//! it does.

use std::time::Duration;

use serde_saphyr::Spanned;

use super::Problems;
use crate::config::file::{FileOnExceed, FileQuota};
use crate::limit::config::{OnExceed, QuotaConfig, QuotaUnit};

/// The smallest byte quota: below it hardly an answer fits (1 KiB).
const MIN_BYTES: u64 = 1024;

pub(super) fn quota(p: &mut Problems, at: &Spanned<FileQuota>) -> Option<QuotaConfig> {
    let f = &at.value;
    let counted = match (&f.rows, &f.bytes) {
        (Some(rows), None) => p
            .whole(
                rows,
                "rows",
                1..=1 << 50,
                "write the rows one client may export per `per`, such as 1000000",
            )
            .map(|n| (n, QuotaUnit::Rows)),
        (None, Some(bytes)) => {
            let n = p.size(
                Some(bytes),
                "bytes",
                0,
                (MIN_BYTES, u64::MAX),
                "a byte quota counts answer bytes: ",
            );
            (n > 0).then_some((n, QuotaUnit::Bytes))
        }
        _ => {
            p.invalid(
                at,
                "quota",
                "counts `rows` (of table exports) or `bytes` (of any answer): set one of the two"
                    .to_owned(),
            );
            None
        }
    };
    let per = match humantime::parse_duration(f.per.value.trim()) {
        Ok(d) if d >= Duration::from_secs(1) && d <= crate::config::load::values::MAX_DURATION => {
            Some(d)
        }
        _ => {
            p.invalid(
                &f.per,
                "per",
                format!(
                    "is {:?}: write a window from 1s to a year, such as 1h or 1d",
                    f.per.value
                ),
            );
            None
        }
    };
    let on_exceed = match f.on_exceed.as_ref().map(|o| o.value) {
        None | Some(FileOnExceed::Finish) => OnExceed::Finish,
        Some(FileOnExceed::Cut) => OnExceed::Cut,
    };
    let (amount, unit) = counted?;
    Some(QuotaConfig {
        amount,
        unit,
        per: per?,
        on_exceed,
    })
}
