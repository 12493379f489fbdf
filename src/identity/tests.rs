//! Unit tests of the token reader, the key sets and the verifier with keys read in memory
//! (HMAC, RSA with and without `kid`, JWK sets with keys to skip). The HTTP paths are in
//! `tests/it/identities.rs`.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::Algorithm;
use serde_json::json;

use super::config::{IdentityConfig, KeySource, ReadKeys, RefusalBudget};
use super::verify::token;
use super::{KeySet, TokenError, Verifier};
use crate::telemetry::IdentityCounters;

const RSA_PRIVATE: &str = include_str!("../../tests/it/support/jwt_rsa.pem");

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn claims() -> serde_json::Value {
    json!({"iss": "i", "aud": "a", "exp": now() + 60, "sub": "s", "n": 7})
}

fn message(alg: &str, kid: Option<&str>, claims: &serde_json::Value) -> String {
    let mut header = json!({"alg": alg});
    if let Some(kid) = kid {
        header["kid"] = json!(kid);
    }
    format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    )
}

fn hs256(secret: &[u8], claims: &serde_json::Value) -> String {
    let message = message("HS256", None, claims);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let sig = ring::hmac::sign(&key, message.as_bytes());
    format!("{message}.{}", B64.encode(sig.as_ref()))
}

fn rsa_key() -> ring::signature::RsaKeyPair {
    let body: String = RSA_PRIVATE
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("pem");
    ring::signature::RsaKeyPair::from_pkcs8(&der).expect("rsa")
}

fn rs256(key: &ring::signature::RsaKeyPair, kid: Option<&str>) -> String {
    let message = message("RS256", kid, &claims());
    let mut sig = vec![0; key.public().modulus_len()];
    let rng = ring::rand::SystemRandom::new();
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &rng,
        message.as_bytes(),
        &mut sig,
    )
    .expect("sign");
    format!("{message}.{}", B64.encode(sig))
}

/// The address the unit tests' tokens come from.
const HERE: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn verifier(algorithms: Vec<Algorithm>, set: KeySet) -> Verifier {
    remembering(algorithms, set, 0)
}

/// A verifier that remembers `token_cache` tokens.
fn remembering(algorithms: Vec<Algorithm>, set: KeySet, token_cache: usize) -> Verifier {
    let config = IdentityConfig {
        name: "t".to_owned(),
        header: http::header::AUTHORIZATION,
        algorithms,
        issuer: vec!["i".to_owned()],
        audience: vec!["a".to_owned()],
        leeway: Duration::from_secs(5),
        keys: KeySource::Read(ReadKeys {
            file: None,
            fingerprint: crate::tls::fingerprint(&[b"test"]),
            set: Arc::new(set),
        }),
        token_cache,
        // Unit tests refuse many tokens from one address: a budget they never spend.
        refused_per_address: RefusalBudget {
            requests: std::num::NonZeroU32::new(1000).expect("nonzero"),
            per: Duration::from_secs(1),
            burst: std::num::NonZeroU32::new(1000).expect("nonzero"),
        },
    };
    Verifier::new(Arc::new(config), None, IdentityCounters::default()).expect("verifier")
}

#[test]
fn the_token_is_the_one_bearer_value_of_its_header() {
    let auth = http::header::AUTHORIZATION;
    let custom = http::HeaderName::from_static("x-jwt");
    let headers = |pairs: &[(&http::HeaderName, &str)]| {
        let mut map = http::HeaderMap::new();
        for (name, value) in pairs {
            map.append((*name).clone(), value.parse().expect("value"));
        }
        map
    };
    assert_eq!(
        token(&headers(&[(&auth, "bEaReR  abc")]), &auth),
        Some("abc")
    );
    assert_eq!(token(&headers(&[(&auth, "abc")]), &auth), None);
    assert_eq!(token(&headers(&[(&auth, "Bearer ")]), &auth), None);
    assert_eq!(
        token(&headers(&[(&auth, "Bearer a"), (&auth, "Bearer a")]), &auth),
        None
    );
    assert_eq!(token(&headers(&[(&custom, "abc")]), &custom), Some("abc"));
    assert_eq!(
        token(&headers(&[(&custom, "Bearer abc")]), &custom),
        Some("abc")
    );
}

#[tokio::test]
async fn hmac_tokens_verify_with_their_secret_only() {
    let secret = b"0123456789abcdef0123456789abcdef";
    let v = verifier(
        vec![Algorithm::HS256],
        KeySet::secret(secret).expect("secret"),
    );
    let got = v.verify(Some(&hs256(secret, &claims())), HERE).await;
    let verified = super::Verified {
        claims: got.expect("verified"),
    };
    assert_eq!(verified.claims["sub"], "s");
    assert_eq!(verified.claim("n").as_deref(), Some("7"));
    assert_eq!(verified.claim("missing"), None);
    let forged = hs256(b"another secret, just as long....", &claims());
    assert_eq!(
        v.verify(Some(&forged), HERE).await,
        Err(TokenError::Invalid("bad signature"))
    );
    let expired = hs256(secret, &json!({"iss": "i", "aud": "a", "exp": now() - 60}));
    assert_eq!(
        v.verify(Some(&expired), HERE).await,
        Err(TokenError::Invalid("expired"))
    );
    assert_eq!(v.verify(None, HERE).await, Err(TokenError::Missing));
}

#[tokio::test]
async fn jwk_sets_pick_by_kid_skip_what_they_cannot_use_and_take_padded_moduli() {
    let key = rsa_key();
    let parts = ring::signature::RsaPublicKeyComponents::<Vec<u8>>::from(key.public());
    // A leading zero byte on the modulus, as some JWKS writers send it.
    let mut n = vec![0];
    n.extend_from_slice(&parts.n);
    let set = json!({"keys": [
        {"kty": "RSA", "kid": "enc", "use": "enc", "n": B64.encode(&n), "e": B64.encode(&parts.e)},
        {"kty": "XYZ", "kid": "odd"},
        {"kty": "RSA", "kid": "rs", "alg": "RS256", "n": B64.encode(&n), "e": B64.encode(&parts.e)},
    ]});
    let (keys, skipped) = KeySet::jwks(set.to_string().as_bytes()).expect("a set");
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    let v = verifier(vec![Algorithm::RS256], keys);
    assert!(v.verify(Some(&rs256(&key, Some("rs"))), HERE).await.is_ok());
    // No kid: each key of the family is tried.
    assert!(v.verify(Some(&rs256(&key, None)), HERE).await.is_ok());
    // The encryption key's kid is not a signing key.
    assert!(
        v.verify(Some(&rs256(&key, Some("enc"))), HERE)
            .await
            .is_err()
    );
    let many: Vec<_> = (0..17)
        .map(|i| json!({"kty": "oct", "kid": i.to_string(), "k": "c2VjcmV0"}))
        .collect();
    let err = KeySet::jwks(json!({ "keys": many }).to_string().as_bytes()).expect_err("too many");
    assert!(err.contains("at most 16"), "{err}");
    assert!(KeySet::jwks(b"{\"keys\": []}").is_err());
    assert!(KeySet::jwks(b"[]").is_err());
}

#[tokio::test]
async fn a_token_with_a_kid_verifies_with_a_key_that_names_none() {
    let key = rsa_key();
    let public = ring::signature::RsaPublicKeyComponents::<Vec<u8>>::from(key.public());
    let set = KeySet::pem(&rsa_spki_pem(&public)).expect("pem");
    let v = verifier(vec![Algorithm::RS256], set);
    assert!(
        v.verify(Some(&rs256(&key, Some("issuer-key-1"))), HERE)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_public_key_is_never_an_hmac_secret_even_when_hs256_is_allowed() {
    let key = rsa_key();
    let public = ring::signature::RsaPublicKeyComponents::<Vec<u8>>::from(key.public());
    let pem = rsa_spki_pem(&public);
    let v = verifier(
        vec![Algorithm::HS256, Algorithm::RS256],
        KeySet::pem(&pem).expect("pem"),
    );
    // HMAC over the token with the PEM text and with its DER: the classic confusion.
    for secret in [pem.clone(), pem_der(&pem)] {
        let forged = hs256(&secret, &claims());
        assert!(v.verify(Some(&forged), HERE).await.is_err());
    }
}

#[tokio::test]
async fn audiences_may_be_a_list_and_candidates_are_capped() {
    let secret = b"0123456789abcdef0123456789abcdef";
    let v = verifier(
        vec![Algorithm::HS256],
        KeySet::secret(secret).expect("secret"),
    );
    let listed = json!({"iss": "i", "aud": ["x", "a"], "exp": now() + 60});
    assert!(v.verify(Some(&hs256(secret, &listed)), HERE).await.is_ok());
    let others = json!({"iss": "i", "aud": ["x", "y"], "exp": now() + 60});
    assert!(v.verify(Some(&hs256(secret, &others)), HERE).await.is_err());
    // Four kid-less RSA keys, the real one last: a token without kid is checked against
    // three, so it is refused; the real one third passes.
    let key = rsa_key();
    let parts = ring::signature::RsaPublicKeyComponents::<Vec<u8>>::from(key.public());
    let decoy = |i: u8| {
        let mut n = parts.n.clone();
        *n.last_mut().expect("n") ^= i << 1;
        json!({"kty": "RSA", "n": B64.encode(&n), "e": B64.encode(&parts.e)})
    };
    let real = json!({"kty": "RSA", "n": B64.encode(&parts.n), "e": B64.encode(&parts.e)});
    for (keys, passes) in [
        (vec![decoy(1), decoy(2), decoy(3), real.clone()], false),
        (vec![decoy(1), decoy(2), real, decoy(3)], true),
    ] {
        let set = json!({ "keys": keys }).to_string();
        let (set, _) = KeySet::jwks(set.as_bytes()).expect("a set");
        let v = verifier(vec![Algorithm::RS256], set);
        assert_eq!(
            v.verify(Some(&rs256(&key, None)), HERE).await.is_ok(),
            passes
        );
    }
}

/// DER bytes of a PEM text.
fn pem_der(pem: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(pem);
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("pem")
}

/// The PKCS#1 `RSA PUBLIC KEY` PEM of `public` (DER written by hand: two INTEGERs).
fn rsa_spki_pem(public: &ring::signature::RsaPublicKeyComponents<Vec<u8>>) -> Vec<u8> {
    fn der(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        match body.len() {
            n if n < 0x80 => out.push(n as u8),
            n if n < 0x100 => out.extend([0x81, n as u8]),
            n => out.extend([0x82, (n >> 8) as u8, n as u8]),
        }
        out.extend_from_slice(body);
        out
    }
    // Minimal INTEGERs: a zero byte before a high bit only.
    let int = |bytes: &[u8]| {
        let mut v = if bytes[0] & 0x80 != 0 {
            vec![0]
        } else {
            vec![]
        };
        v.extend_from_slice(bytes);
        der(0x02, &v)
    };
    let seq = der(0x30, &[int(&public.n), int(&public.e)].concat());
    let b64 = base64::engine::general_purpose::STANDARD.encode(seq);
    format!("-----BEGIN RSA PUBLIC KEY-----\n{b64}\n-----END RSA PUBLIC KEY-----\n").into_bytes()
}

#[tokio::test]
async fn verified_tokens_are_remembered_and_junk_is_not() {
    let secret = b"0123456789abcdef0123456789abcdef";
    let set = || KeySet::secret(secret).expect("secret");
    let v = remembering(vec![Algorithm::HS256], set(), 10);
    let token = hs256(secret, &claims());
    let first = v.verify(Some(&token), HERE).await.expect("verified");
    let again = v.verify(Some(&token), HERE).await.expect("verified");
    assert!(
        Arc::ptr_eq(&first, &again),
        "the second time from the cache"
    );
    assert_eq!(v.cached(), 1);
    // Refused tokens are never kept, whatever their number.
    for n in 0..20 {
        let claims = json!({"iss": "i", "aud": "a", "exp": now() + 60, "n": n});
        let forged = hs256(b"another secret, just as long....", &claims);
        assert!(v.verify(Some(&forged), HERE).await.is_err());
    }
    let expired = hs256(secret, &json!({"iss": "i", "aud": "a", "exp": now() - 60}));
    assert!(v.verify(Some(&expired), HERE).await.is_err());
    assert_eq!(v.cached(), 1);
    // Without a cache every token is checked.
    let plain = verifier(vec![Algorithm::HS256], set());
    let first = plain.verify(Some(&token), HERE).await.expect("verified");
    let again = plain.verify(Some(&token), HERE).await.expect("verified");
    assert!(!Arc::ptr_eq(&first, &again));
}

#[test]
fn a_remembered_token_expires_and_belongs_to_its_key_set() {
    use super::cache::TokenCache;
    let secret = b"0123456789abcdef0123456789abcdef";
    let (set, other) = (
        Arc::new(KeySet::secret(secret).expect("secret")),
        Arc::new(KeySet::secret(secret).expect("secret")),
    );
    let cache = TokenCache::new(10, Duration::from_secs(5)).expect("a cache");
    let claims = |exp: u64| Arc::new(json!({"exp": exp}).as_object().expect("map").clone());
    // Expired 3 s ago: still within the 5 s leeway.
    cache.put("late", &claims(now() - 3), &set);
    assert!(cache.get("late", Some(&set)).is_some());
    // Expired beyond the leeway since it was verified: gone.
    cache.put("gone", &claims(now() - 6), &set);
    assert!(cache.get("gone", Some(&set)).is_none());
    // Another set (a JWKS fetched again), or none: verified again.
    cache.put("kept", &claims(now() + 60), &set);
    assert!(cache.get("kept", Some(&other)).is_none());
    cache.put("kept", &claims(now() + 60), &set);
    assert!(cache.get("kept", None).is_none());
    assert_eq!(cache.len(), 1, "only `late` left");
    // Too long to keep, or no whole exp.
    cache.put(&"x".repeat(5000), &claims(now() + 60), &set);
    cache.put(
        "float",
        &Arc::new(json!({"exp": 1.5e9}).as_object().expect("map").clone()),
        &set,
    );
    assert_eq!(cache.len(), 1);
    assert!(TokenCache::new(0, Duration::ZERO).is_none(), "0: no cache");
}
