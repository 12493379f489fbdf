//! An identity's keys: exactly one of `jwks_file`, `public_key_file`, `secret_env` (read now,
//! so a reload reads them again) or `jwks_url` (its URL, TLS and refresh bounds), checked
//! against the algorithms.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, AlgorithmFamily};
use serde_saphyr::Spanned;

use super::super::values::Problems;
use crate::config::file::FileIdentity;
use crate::identity::KeySet;
use crate::identity::config::*;

/// Exactly one of `jwks_file`, `jwks_url`, `public_key_file`, `secret_env`, matching the
/// algorithms' families.
pub(super) fn keys(
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
        let shown = crate::config::redact::without_password(url.value.trim());
        p.invalid(url, "jwks_url", format!("is {shown:?}: write the https:// URL of the issuer's JWK set, e.g. https://auth.example.com/.well-known/jwks.json (keys fetched in plain text could be swapped on the way)"));
        return None;
    };
    let tls = super::super::tls::upstream(p, &uri, f.tls.as_ref())?;
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
            fingerprint: crate::tls::fingerprint(&[&bytes]),
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
        fingerprint: crate::tls::fingerprint(&[&secret]),
        set: Arc::new(set),
    }))
}
