//! `limits.overrides` and `limits.exempt` → the route's tenant classes: each override's name
//! (a metric label and part of its Redis keys), what matches it and its per-client limits.

use std::num::NonZeroU32;

use serde_saphyr::Spanned;

use super::Problems;
use crate::config::file::{FileLimits, FileMatch, FileOverride};
use crate::limit::config::{ClientKeySource, Override, TenantMatch};

/// Most overrides a route may have.
const MAX_OVERRIDES: usize = 64;

/// The overrides and exempt matches of `l`, whose key is `key`.
pub(super) fn tenants(
    p: &mut Problems,
    l: &FileLimits,
    key: &ClientKeySource,
) -> (Vec<Override>, Vec<TenantMatch>) {
    let mut overrides: Vec<Override> = Vec::new();
    for at in &l.overrides {
        if let Some(o) = one(p, at, key) {
            if overrides.iter().any(|seen| seen.name == o.name) {
                p.invalid(
                    &at.value.name,
                    "name",
                    format!(
                        "`{}` is used twice: give each override its own name",
                        o.name
                    ),
                );
                continue;
            }
            overrides.push(o);
        }
    }
    if let Some(at) = l.overrides.get(MAX_OVERRIDES) {
        p.invalid(
            at,
            "overrides",
            format!(
                "holds {} entries: at most {MAX_OVERRIDES}",
                l.overrides.len()
            ),
        );
    }
    // Exempt skips every limit: only a verified claim may say so, never a header a client
    // could send itself.
    for m in &l.exempt {
        if let Some(header) = &m.value.header {
            p.invalid(header, "header", "cannot exempt a request: a client could send it itself; exempt by a verified claim (`{claim: C, value: V}` with `key: {jwt, claim}`)".to_owned());
        }
    }
    let exempt = l
        .exempt
        .iter()
        .filter(|m| m.value.header.is_none())
        .filter_map(|m| matcher(p, m, key))
        .collect();
    (overrides, exempt)
}

fn one(p: &mut Problems, at: &Spanned<FileOverride>, key: &ClientKeySource) -> Option<Override> {
    let f = &at.value;
    let name = f.name.value.trim();
    let plain = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !plain || name == "default" || name == "exempt" {
        p.invalid(&f.name, "name", format!("is {:?}: write a name of lower-case letters, digits, `_` and `-` (at most 64; not `default` or `exempt`, which metrics use), such as `enterprise`", f.name.value));
    }
    if f.rate.is_none() && f.concurrency.is_none() {
        p.invalid(
            at,
            "overrides",
            "sets no limit: give it `rate`, `concurrency` or both".to_owned(),
        );
    }
    let rate = f.rate.as_ref().map(|r| super::rate(p, r));
    let concurrency = f.concurrency.as_ref().map(|c| {
        let n = p.whole(
            c,
            "concurrency",
            1..=u64::from(u32::MAX),
            "write 1 or more requests in flight per client",
        );
        n.and_then(|n| u32::try_from(n).ok())
            .and_then(NonZeroU32::new)
    });
    let matches = matcher(p, &f.matches, key);
    Some(Override {
        name: plain.then(|| name.to_owned())?,
        matches: matches?,
        rate: rate.map(|r| r.ok_or(())).transpose().ok()?,
        concurrency: concurrency.map(|c| c.ok_or(())).transpose().ok()?,
    })
}

/// One `{claim, value}` or `{header, value}`.
fn matcher(
    p: &mut Problems,
    at: &Spanned<FileMatch>,
    key: &ClientKeySource,
) -> Option<TenantMatch> {
    let f = &at.value;
    let value = f.value.value.clone();
    if value.is_empty() {
        p.invalid(
            &f.value,
            "value",
            "is empty: write the value that picks the requests out".to_owned(),
        );
        return None;
    }
    match (&f.claim, &f.header) {
        (Some(claim), None) => {
            if !matches!(key, ClientKeySource::Claim(_)) {
                p.invalid(claim, "claim", "is read from the token the route's key verifies: set `key: {jwt: NAME, claim: CLAIM}`, or match a header".to_owned());
                return None;
            }
            Some(TenantMatch::Claim {
                claim: claim.value.trim().to_owned(),
                value,
            })
        }
        (None, Some(header)) => {
            let header = p.header_name(header, "header", "X-Plan")?;
            Some(TenantMatch::Header { header, value })
        }
        _ => {
            p.invalid(at, "match", "takes `claim` (of the verified token) or `header`, with `value`: set one of the two".to_owned());
            None
        }
    }
}
