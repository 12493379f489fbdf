//! Unit tests of the token reader, the key sets and the verifier with keys read in memory
//! (HMAC, RSA with and without `kid`, JWK sets with keys to skip). The HTTP paths are in
//! `tests/it/identities.rs`.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::Algorithm;
use serde_json::json;

use super::config::{IdentityConfig, KeySource, ReadKeys, fingerprint};
use super::verify::token;
use super::{KeySet, TokenError, Verifier};

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

fn verifier(algorithms: Vec<Algorithm>, set: KeySet) -> Verifier {
    let config = IdentityConfig {
        name: "t".to_owned(),
        header: http::header::AUTHORIZATION,
        algorithms,
        issuer: vec!["i".to_owned()],
        audience: vec!["a".to_owned()],
        leeway: Duration::from_secs(5),
        keys: KeySource::Read(ReadKeys {
            file: None,
            fingerprint: fingerprint(b"test"),
            set: Arc::new(set),
        }),
    };
    Verifier::new(Arc::new(config)).expect("verifier")
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
    let got = v.verify(Some(&hs256(secret, &claims()))).await;
    let verified = super::Verified {
        claims: got.expect("verified"),
    };
    assert_eq!(verified.claims["sub"], "s");
    assert_eq!(verified.claim("n").as_deref(), Some("7"));
    assert_eq!(verified.claim("missing"), None);
    let forged = hs256(b"another secret, just as long....", &claims());
    assert_eq!(
        v.verify(Some(&forged)).await,
        Err(TokenError::Invalid("bad signature"))
    );
    let expired = hs256(secret, &json!({"iss": "i", "aud": "a", "exp": now() - 60}));
    assert_eq!(
        v.verify(Some(&expired)).await,
        Err(TokenError::Invalid("expired"))
    );
    assert_eq!(v.verify(None).await, Err(TokenError::Missing));
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
    assert!(v.verify(Some(&rs256(&key, Some("rs")))).await.is_ok());
    // No kid: each key of the family is tried.
    assert!(v.verify(Some(&rs256(&key, None))).await.is_ok());
    // The encryption key's kid is not a signing key.
    assert!(v.verify(Some(&rs256(&key, Some("enc")))).await.is_err());
    let many: Vec<_> = (0..17)
        .map(|i| json!({"kty": "oct", "kid": i.to_string(), "k": "c2VjcmV0"}))
        .collect();
    let err = KeySet::jwks(json!({ "keys": many }).to_string().as_bytes()).expect_err("too many");
    assert!(err.contains("at most 16"), "{err}");
    assert!(KeySet::jwks(b"{\"keys\": []}").is_err());
    assert!(KeySet::jwks(b"[]").is_err());
}
