//! `identities`: each identity's token header, algorithms, issuer, audience and keys, checked
//! and its key files read before anything runs; and the claims that name one
//! (`key: {jwt, claim}`, `scope: {jwt, claim, column}`).

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use jsonwebtoken::Algorithm;
use serde_saphyr::Spanned;

use super::values::Problems;
use crate::config::file::{FileClaimKey, FileConfig, FileIdentity};

use crate::identity::config::*;
use crate::limit::config::ClaimKey;

mod keys;

/// The file's identities: those that load, by name, and every declared name.
#[derive(Default)]
pub(super) struct Identities {
    pub(super) loaded: BTreeMap<String, Arc<IdentityConfig>>,
    declared: Vec<String>,
}

/// Every identity of the file; one with a problem is reported and left out.
pub(super) fn identities(p: &mut Problems, file: &FileConfig) -> Identities {
    let loaded = file
        .identities
        .iter()
        .filter_map(|(name, f)| Some((name.clone(), Arc::new(identity(p, name, f)?))))
        .collect();
    let declared = file.identities.keys().cloned().collect();
    Identities { loaded, declared }
}

impl Identities {
    /// The identity a `jwt:` names, or a problem listing the declared ones.
    pub(super) fn named(
        &self,
        p: &mut Problems,
        jwt: &Spanned<String>,
    ) -> Option<Arc<IdentityConfig>> {
        if let Some(found) = self.loaded.get(&jwt.value) {
            return Some(Arc::clone(found));
        }
        // Declared but refused: its own problem is reported already.
        if !self.declared.contains(&jwt.value) {
            let known = if self.declared.is_empty() {
                String::new()
            } else {
                format!(", or use one of {}", self.declared.join(", "))
            };
            p.invalid(
                jwt,
                "jwt",
                format!(
                    "names `{}`, which is not under `identities`: declare it there{known}",
                    jwt.value
                ),
            );
        }
        None
    }

    /// `key: {jwt, claim, anonymous}`.
    pub(super) fn claim_key(&self, p: &mut Problems, k: &FileClaimKey) -> Option<ClaimKey> {
        let identity = self.named(p, &k.jwt);
        let claim = claim(p, &k.claim)?;
        Some(ClaimKey {
            identity: identity?,
            claim,
            anonymous: k.anonymous.is_some(),
        })
    }
}

/// A claim's name: a top-level claim, written as the token has it (`sub`, `tenant_id`,
/// `https://example.com/org`).
pub(super) fn claim(p: &mut Problems, c: &Spanned<String>) -> Option<String> {
    let name = c.value.trim();
    if name.is_empty() {
        p.invalid(
            c,
            "claim",
            "is empty: name the claim, such as `sub`".to_owned(),
        );
        return None;
    }
    Some(name.to_owned())
}

fn identity(p: &mut Problems, name: &str, at: &Spanned<FileIdentity>) -> Option<IdentityConfig> {
    let f = &at.value;
    let header = match &f.header {
        None => Some(http::header::AUTHORIZATION),
        Some(h) => p.header_name(h, "header", "Authorization"),
    };
    let algorithms = algorithms(p, at);
    let issuer = listed(
        p,
        at,
        f.issuer.as_ref(),
        "issuer",
        "the `iss` your issuer writes, e.g. `issuer: https://auth.example.com/`",
    );
    let audience = listed(
        p,
        at,
        f.audience.as_ref(),
        "audience",
        "the `aud` tokens for this service carry, e.g. `audience: orders-api`",
    );
    let keys = keys::keys(p, at, &algorithms);
    let leeway = p.delay(f.leeway.as_ref(), "leeway", DEFAULT_LEEWAY);
    if let Some(at) = &f.leeway
        && leeway > MAX_LEEWAY
    {
        p.invalid(at, "leeway", format!("is {}: at most 5m; clocks that far apart need fixing, and a longer leeway accepts tokens long expired", at.value));
    }
    let token_cache = f
        .token_cache
        .as_ref()
        .map_or(Some(DEFAULT_TOKEN_CACHE as u64), |n| {
            p.whole(
                n,
                "token_cache",
                0..=MAX_TOKEN_CACHE,
                &format!(
                    "write how many verified tokens to remember, 0 (none) to {MAX_TOKEN_CACHE}"
                ),
            )
        });
    let refused_per_address =
        f.refused_per_address
            .as_ref()
            .map_or(Some(DEFAULT_REFUSED_PER_ADDRESS), |r| {
                let rate = super::limits::rate(p, r)?;
                Some(RefusalBudget {
                    requests: rate.requests,
                    per: rate.per,
                    burst: rate.burst,
                })
            });
    Some(IdentityConfig {
        token_cache: usize::try_from(token_cache.unwrap_or(0)).unwrap_or(usize::MAX),
        refused_per_address: refused_per_address?,
        name: name.to_owned(),
        header: header?,
        algorithms,
        issuer: issuer?,
        audience: audience?,
        leeway,
        keys: keys?,
    })
}

/// `algorithms`: required, since a verifier that takes the token's own word for its algorithm
/// is how `alg: none` and HMAC-with-the-public-key forgeries get in.
fn algorithms(p: &mut Problems, at: &Spanned<FileIdentity>) -> Vec<Algorithm> {
    let Some(list) = &at.value.algorithms else {
        p.invalid(
            at,
            "algorithms",
            "is missing: list the algorithms your issuer signs with, e.g. `algorithms: [RS256]`"
                .to_owned(),
        );
        return Vec::new();
    };
    let mut algorithms = Vec::new();
    for a in &list.value {
        match Algorithm::from_str(a.value.trim()) {
            Ok(alg) if !algorithms.contains(&alg) => algorithms.push(alg),
            Ok(_) => p.invalid(a, "algorithms", format!("lists {} twice", a.value)),
            Err(_) => p.invalid(a, "algorithms", format!("{:?} is not one: write HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA", a.value)),
        }
    }
    if list.value.is_empty() {
        p.invalid(
            list,
            "algorithms",
            "is empty: list the algorithms your issuer signs with".to_owned(),
        );
    }
    algorithms
}

/// `issuer`, `audience`: one value or a list, required.
fn listed(
    p: &mut Problems,
    at: &Spanned<FileIdentity>,
    value: Option<&Spanned<crate::config::file::OneOrMany>>,
    key: &'static str,
    example: &str,
) -> Option<Vec<String>> {
    let Some(value) = value else {
        p.invalid(
            at,
            key,
            format!("is missing: tokens are checked against it; write {example}"),
        );
        return None;
    };
    let values = value.value.values();
    if values.is_empty() || values.iter().any(|v| v.trim().is_empty()) {
        p.invalid(value, key, format!("holds an empty value: write {example}"));
        return None;
    }
    Some(values)
}
