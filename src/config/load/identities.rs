//! `identities`: each identity's token header, algorithms, issuer, audience and keys, checked
//! and its key files read before anything runs; and the claims that name one
//! (`key: {jwt, claim}`, `scope: {jwt, claim, column}`).

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, AlgorithmFamily};
use serde_saphyr::Spanned;

use super::values::Problems;
use crate::config::file::{FileClaimKey, FileConfig, FileIdentity};
use crate::identity::KeySet;
use crate::identity::config::*;
use crate::limit::config::ClaimKey;

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
        Some(h) => http::HeaderName::from_bytes(h.value.trim().as_bytes())
            .ok()
            .or_else(|| {
                p.invalid(
                    h,
                    "header",
                    format!(
                        "is {:?}: write a header name, such as Authorization",
                        h.value
                    ),
                );
                None
            }),
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
    let keys = keys(p, at, &algorithms);
    let leeway = p.delay(f.leeway.as_ref(), "leeway", DEFAULT_LEEWAY);
    if let Some(at) = &f.leeway
        && leeway > MAX_LEEWAY
    {
        p.invalid(at, "leeway", format!("is {}: at most 5m; clocks that far apart need fixing, and a longer leeway accepts tokens long expired", at.value));
    }
    Some(IdentityConfig {
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

/// Exactly one of `jwks_file`, `jwks_url`, `public_key_file`, `secret_env`, matching the
/// algorithms' families.
fn keys(
    p: &mut Problems,
    at: &Spanned<FileIdentity>,
    algorithms: &[Algorithm],
) -> Option<KeySource> {
    let f = &at.value;
    if f.jwks_url.is_none() {
        let url_only = [
            ("tls", f.tls.as_ref().map(|t| t.referenced)),
            (
                "jwks_refresh",
                f.jwks_refresh.as_ref().map(|t| t.referenced),
            ),
            (
                "jwks_min_refresh",
                f.jwks_min_refresh.as_ref().map(|t| t.referenced),
            ),
        ];
        for (key, at) in url_only {
            if let Some(at) = at {
                p.0.push(crate::config::Located {
                    at: Some(at.into()),
                    problem: crate::config::ConfigProblem::Invalid {
                        key,
                        reason: "applies only with `jwks_url`: remove it".to_owned(),
                    },
                });
            }
        }
    }
    let hmac = algorithms
        .iter()
        .any(|a| a.family() == AlgorithmFamily::Hmac);
    let public = algorithms
        .iter()
        .any(|a| a.family() != AlgorithmFamily::Hmac);
    let source = match (&f.jwks_file, &f.jwks_url, &f.public_key_file, &f.secret_env) {
        (Some(file), None, None, None) => {
            let mut skipped = Vec::new();
            let read = read_file(p, file, "jwks_file", |bytes| {
                KeySet::jwks(bytes).map(|(set, s)| {
                    skipped = s;
                    set
                })
            });
            if !skipped.is_empty() {
                p.warn(
                    file,
                    "jwks_file",
                    format!("keys no token can use are skipped: {}", skipped.join("; ")),
                );
            }
            read
        }
        (None, Some(url), None, None) => jwks_url(p, at, url),
        (None, None, Some(file), None) => read_file(p, file, "public_key_file", public_pem),
        (None, None, None, Some(var)) => secret(p, var),
        _ => {
            p.invalid(at, "identities", "each identity needs exactly one of `jwks_file`, `jwks_url`, `public_key_file`, `secret_env`".to_owned());
            return None;
        }
    }?;
    // A missing or empty `algorithms` is reported already.
    let Some(list) = f.algorithms.as_ref().filter(|_| !algorithms.is_empty()) else {
        return Some(source);
    };
    if let Some(var) = &f.secret_env {
        if public {
            p.invalid(var, "secret_env", "is an HMAC secret, but `algorithms` lists public-key algorithms: list only HS256, HS384 or HS512, or give the issuer's public keys".to_owned());
        }
    } else if hmac {
        p.invalid(list, "algorithms", "lists an HMAC algorithm (HS…) for public keys: a public key is never used as an HMAC secret; remove it, or use `secret_env`".to_owned());
    } else if let KeySource::Read(read) = &source {
        let families = read.set.families();
        if !algorithms.iter().any(|a| families.contains(&a.family())) {
            p.invalid(list, "algorithms", "lists no algorithm of the keys' type (RSA: RS…/PS…, EC: ES…, Ed25519: EdDSA): list the one your issuer signs with".to_owned());
        }
    }
    Some(source)
}

/// `jwks_url`: an `https://` URL, fetched with the TLS of `tls` (as an upstream's).
fn jwks_url(
    p: &mut Problems,
    at: &Spanned<FileIdentity>,
    url: &Spanned<String>,
) -> Option<KeySource> {
    let f = &at.value;
    let parsed = url.value.trim().parse::<http::Uri>().ok();
    let Some(uri) = parsed.filter(|u| u.scheme_str() == Some("https") && u.host().is_some()) else {
        p.invalid(url, "jwks_url", format!("is {:?}: write the https:// URL of the issuer's JWK set, e.g. https://auth.example.com/.well-known/jwks.json (keys fetched in plain text could be swapped on the way)", url.value));
        return None;
    };
    let tls = super::tls::upstream(p, &uri, f.tls.as_ref())?;
    let refresh = between(
        p,
        f.jwks_refresh.as_ref(),
        "jwks_refresh",
        DEFAULT_JWKS_REFRESH,
        (10, 86_400),
    );
    let min_refresh = between(
        p,
        f.jwks_min_refresh.as_ref(),
        "jwks_min_refresh",
        DEFAULT_JWKS_MIN_REFRESH,
        (1, 3_600),
    );
    Some(KeySource::Url(Box::new(JwksUrl {
        url: uri,
        tls,
        refresh,
        min_refresh,
    })))
}

/// A duration within `(min, max)` seconds, else a problem saying so.
fn between(
    p: &mut Problems,
    value: Option<&Spanned<String>>,
    key: &'static str,
    default: Duration,
    (min, max): (u64, u64),
) -> Duration {
    let d = p.duration(value, key, default);
    if let Some(v) = value
        && !(Duration::from_secs(min)..=Duration::from_secs(max)).contains(&d)
    {
        p.invalid(v, key, format!("is {}: keep it between {min}s and {max}s (fetching a JWK set more often would hammer the issuer; less often, rotations wait)", v.value));
    }
    d
}

/// A PEM public key; a private key is refused (it must not sit where the public one is read,
/// and pagegate never signs).
fn public_pem(pem: &[u8]) -> Result<KeySet, String> {
    if String::from_utf8_lossy(pem).contains("PRIVATE KEY") {
        return Err("holds a private key: give the issuer's public key only, e.g. `openssl pkey -pubout -in private.pem`".to_owned());
    }
    KeySet::pem(pem)
}

fn read_file(
    p: &mut Problems,
    file: &Spanned<String>,
    key: &'static str,
    parse: impl FnOnce(&[u8]) -> Result<KeySet, String>,
) -> Option<KeySource> {
    let bytes = match std::fs::read(file.value.trim()) {
        Ok(bytes) => bytes,
        Err(e) => {
            p.invalid(
                file,
                key,
                format!("cannot be read ({e}): give the path of the issuer's keys"),
            );
            return None;
        }
    };
    match parse(&bytes) {
        Ok(set) => Some(KeySource::Read(ReadKeys {
            file: Some(file.value.trim().into()),
            fingerprint: fingerprint(&bytes),
            set: Arc::new(set),
        })),
        Err(why) => {
            p.invalid(file, key, format!("{} {why}", file.value));
            None
        }
    }
}

fn secret(p: &mut Problems, var: &Spanned<String>) -> Option<KeySource> {
    let secret = match std::env::var(&var.value) {
        Ok(secret) => secret.into_bytes(),
        // `check` without the environment: noted, and a stand-in validates the rest.
        Err(_) if p.2.is_some() => {
            p.2.get_or_insert_default().push(var.value.clone());
            vec![b'-'; MIN_HMAC_SECRET]
        }
        Err(_) => {
            p.invalid(var, "secret_env", format!("names ${}, which is not set: export the HMAC secret your issuer signs with (at least {MIN_HMAC_SECRET} bytes)", var.value));
            return None;
        }
    };
    if secret.len() < MIN_HMAC_SECRET {
        p.invalid(
            var,
            "secret_env",
            format!(
                "${} holds {} bytes: an HMAC secret needs at least {MIN_HMAC_SECRET}",
                var.value,
                secret.len()
            ),
        );
        return None;
    }
    let set = KeySet::secret(&secret).ok()?;
    Some(KeySource::Read(ReadKeys {
        file: None,
        fingerprint: fingerprint(&secret),
        set: Arc::new(set),
    }))
}
