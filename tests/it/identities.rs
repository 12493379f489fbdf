//! Verified identities through a real pagegate: limits keyed by a JWT claim, 401 with
//! `WWW-Authenticate` for missing, expired, forged and confused tokens (nothing forwarded),
//! `anonymous: client`, keys from a file that a reload reads again, a JWK set fetched over
//! HTTPS that is refreshed for an unknown `kid` at most once per `jwks_min_refresh` and kept
//! while its server fails, and a table scoped by a claim on a real PostgreSQL.

use std::time::Duration;

use serde_json::json;

use crate::support::jwt::{JwksServer, RSA_PUBLIC_PEM, Signer, claims, now};
use crate::support::postgres::Postgres;
use crate::support::tls::Ca;
use crate::support::{Got, Proxy, Upstream, get_with};

async fn bearer(proxy: &Proxy, path: &str, token: &str) -> Got {
    get_with(proxy, path, &[("authorization", format!("Bearer {token}"))]).await
}

/// The YAML of identity `api` (with `keys` and `algorithms`) and a route `/orders` limited to
/// 2 a minute per `key`, with an admin listener for its metrics.
fn yaml(keys: &str, algorithms: &str, key: &str) -> String {
    format!(
        "admin: {{listen: 127.0.0.1:0}}
identities:
  api: {{algorithms: {algorithms}, issuer: 'https://issuer.test/', audience: orders, {keys}}}
upstreams: {{app: {{url: '{{upstream}}'}}}}
routes:
  - name: orders
    path: /orders
    upstream: app
    limits: {{key: {key}, rate: {{per_client: {{requests: 2, per: 1m}}}}}}
"
    )
}

/// A key file, read as its path; removed when dropped.
fn key_file(name: &str, pem: &str) -> KeyFile {
    let dir = crate::support::scratch_dir(name);
    let path = dir.join("key.pem");
    std::fs::write(&path, pem).expect("write key");
    KeyFile { _dir: dir, path }
}

struct KeyFile {
    _dir: crate::support::Scratch,
    path: std::path::PathBuf,
}

impl std::ops::Deref for KeyFile {
    type Target = std::path::Path;

    fn deref(&self) -> &std::path::Path {
        &self.path
    }
}

fn assert_refused(got: &Got, kind: &str, challenge: &str) {
    let status = if kind == "missing-claim" { 403 } else { 401 };
    let problem = got.problem(status);
    assert_eq!(
        problem["type"],
        format!("urn:pagegate:problem:{kind}"),
        "{problem}"
    );
    assert_eq!(got.header("www-authenticate"), Some(challenge));
}

/// Tokens that must each be refused 401 `invalid-token`, by what is wrong with them.
fn bad_tokens(rsa: &Signer, alice: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "expired beyond the leeway",
            rsa.sign(None, &claims(&json!({"sub": "eve", "exp": now() - 120}))),
        ),
        (
            "not valid yet",
            rsa.sign(None, &claims(&json!({"sub": "eve", "nbf": now() + 600}))),
        ),
        (
            "no exp",
            rsa.sign(None, &claims(&json!({"sub": "eve", "exp": null}))),
        ),
        (
            "another audience",
            rsa.sign(None, &claims(&json!({"sub": "eve", "aud": "billing"}))),
        ),
        (
            "no audience",
            rsa.sign(None, &claims(&json!({"sub": "eve", "aud": null}))),
        ),
        (
            "another issuer",
            rsa.sign(
                None,
                &claims(&json!({"sub": "eve", "iss": "https://evil.test/"})),
            ),
        ),
        // `sub` is a registered claim: a string, or the token is malformed.
        (
            "a sub that is an object",
            rsa.sign(None, &claims(&json!({"sub": {"id": 1}}))),
        ),
        (
            "another key",
            Signer::es256().sign_as("RS256", None, &claims(&json!({"sub": "eve"}))),
        ),
        (
            "an algorithm not allowed",
            Signer::es256().sign(None, &claims(&json!({"sub": "eve"}))),
        ),
        // The public key used as an HMAC secret: the classic algorithm confusion.
        (
            "HS256 with the public key",
            Signer::hs256(RSA_PUBLIC_PEM.as_bytes()).sign(None, &claims(&json!({"sub": "eve"}))),
        ),
        ("alg none", {
            let signed = rsa.sign_as("none", None, &claims(&json!({"sub": "eve"})));
            format!("{}.", signed.rsplit_once('.').expect("three parts").0)
        }),
        ("tampered claims", {
            let parts: Vec<&str> = alice.split('.').collect();
            let other = rsa.sign(None, &claims(&json!({"sub": "mallory"})));
            format!(
                "{}.{}.{}",
                parts[0],
                other.split('.').nth(1).expect("claims"),
                parts[2]
            )
        }),
        ("not a token", "garbage".to_owned()),
    ]
}

#[tokio::test]
async fn a_claim_keys_the_rate_and_every_bad_token_gets_401_before_the_backend() {
    let upstream = Upstream::json("[]").await;
    let file = key_file("identity-rsa", RSA_PUBLIC_PEM);
    let keys = format!("public_key_file: '{}'", file.display());
    let proxy = Proxy::start(&yaml(&keys, "[RS256]", "{jwt: api, claim: sub}"), &upstream).await;
    let rsa = Signer::rsa();
    let alice = rsa.sign(None, &claims(&json!({"sub": "alice"})));
    let bob = rsa.sign(None, &claims(&json!({"sub": "bob"})));
    // Keyed by the claim: alice's third request is refused, bob (same address) still passes.
    for _ in 0..2 {
        assert_eq!(bearer(&proxy, "/orders", &alice).await.status, 200);
    }
    assert_eq!(
        bearer(&proxy, "/orders", &alice).await.problem(429)["type"],
        "urn:pagegate:problem:rate-limited"
    );
    assert_eq!(bearer(&proxy, "/orders", &bob).await.status, 200);
    // A token that names its key (as most issuers' do) verifies with a key file naming none.
    let named = rsa.sign(Some("issuer-key-7"), &claims(&json!({"sub": "carol"})));
    assert_eq!(bearer(&proxy, "/orders", &named).await.status, 200);
    let forwarded = upstream.seen().len();
    assert_eq!(forwarded, 4);

    // No token: the bare challenge (RFC 6750 §3.1).
    assert_refused(
        &crate::support::get(&proxy.url("/orders")).await,
        "unauthenticated",
        "Bearer",
    );
    let basic = get_with(
        &proxy,
        "/orders",
        &[("authorization", "Basic YTpi".to_owned())],
    )
    .await;
    assert_refused(&basic, "unauthenticated", "Bearer");
    let invalid = r#"Bearer error="invalid_token""#;
    let bad = bad_tokens(&rsa, &alice);
    for (what, token) in &bad {
        let got = bearer(&proxy, "/orders", token).await;
        assert_eq!(got.status, 401, "{what}: {}", got.text());
        assert_refused(&got, "invalid-token", invalid);
    }
    // A good token without the claim: another from the same issuer would lack it too, so
    // no `invalid_token` (which clients answer by fetching a new one) but 403.
    let scope = r#"Bearer error="insufficient_scope""#;
    for claims_of in [json!({}), json!({"sub": ""})] {
        let token = rsa.sign(None, &claims(&claims_of));
        let got = bearer(&proxy, "/orders", &token).await;
        assert_eq!(got.status, 403, "{claims_of}: {}", got.text());
        assert_refused(&got, "missing-claim", scope);
    }
    // Two tokens: ambiguous, refused as none.
    let two = get_with(
        &proxy,
        "/orders",
        &[
            ("authorization", format!("Bearer {bob}")),
            ("authorization", format!("Bearer {bob}")),
        ],
    )
    .await;
    assert_refused(&two, "unauthenticated", "Bearer");
    assert_eq!(
        upstream.seen().len(),
        forwarded,
        "no refused request reached the backend"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn anonymous_client_keys_a_request_without_a_good_token_by_its_address() {
    let upstream = Upstream::json("[]").await;
    let file = key_file("identity-anonymous", RSA_PUBLIC_PEM);
    let keys = format!("public_key_file: '{}'", file.display());
    let key = "{jwt: api, claim: sub, anonymous: client}";
    let proxy = Proxy::start(&yaml(&keys, "[RS256]", key), &upstream).await;
    let hs = Signer::rsa();
    let expired = hs.sign(None, &claims(&json!({"sub": "carol", "exp": now() - 600})));
    // No token and an expired one share the address's bucket.
    assert_eq!(crate::support::get(&proxy.url("/orders")).await.status, 200);
    assert_eq!(bearer(&proxy, "/orders", &expired).await.status, 200);
    assert_eq!(crate::support::get(&proxy.url("/orders")).await.status, 429);
    // A good token has a bucket of its own.
    let carol = hs.sign(None, &claims(&json!({"sub": "carol"})));
    assert_eq!(bearer(&proxy, "/orders", &carol).await.status, 200);
    proxy.stop().await;
}

#[tokio::test]
async fn an_address_that_sent_too_many_bad_tokens_waits_before_its_next_is_checked() {
    let upstream = Upstream::json("[]").await;
    let file = key_file("identity-refusals", RSA_PUBLIC_PEM);
    let keys = format!(
        "public_key_file: '{}', refused_per_address: {{requests: 1, per: 1m, burst: 3}}",
        file.display()
    );
    let trusted = "trusted_proxies: [127.0.0.1]\n";
    for (route_key, anonymous) in [
        ("{jwt: api, claim: sub}", false),
        ("{jwt: api, claim: sub, anonymous: client}", true),
    ] {
        let yaml = format!("{trusted}{}", yaml(&keys, "[RS256]", route_key));
        let proxy = Proxy::start(&yaml, &upstream).await;
        let rsa = Signer::rsa();
        let from = async |ip: &str, token: &str| {
            let auth = ("authorization", format!("Bearer {token}"));
            let headers = [auth, ("x-forwarded-for", ip.to_owned())];
            get_with(&proxy, "/orders", &headers).await
        };
        let alice = rsa.sign(None, &claims(&json!({"sub": "alice"})));
        assert_eq!(
            from("203.0.113.9", &alice).await.status,
            200,
            "remembered from now on"
        );
        let junk = Signer::es256().sign_as("RS256", None, &claims(&json!({"sub": "eve"})));
        // Refused, or (anonymous) keyed by the address, whose two a minute they spend.
        let bad = if anonymous { [200, 200, 429] } else { [401; 3] };
        for status in bad {
            assert_eq!(from("203.0.113.9", &junk).await.status, status);
        }
        // The budget of three is spent: the next token the cache does not hold is not checked.
        let bob = rsa.sign(None, &claims(&json!({"sub": "bob"})));
        let waited = from("203.0.113.9", &bob).await;
        if anonymous {
            // Served as anonymous, keyed by its address, whose bucket the junk spent.
            assert_eq!(waited.status, 429, "{}", waited.text());
            assert_eq!(
                waited.problem(429)["type"],
                "urn:pagegate:problem:rate-limited"
            );
        } else {
            let problem = waited.problem(429);
            assert_eq!(problem["type"], "urn:pagegate:problem:too-many-bad-tokens");
            assert!(
                (50..=60).contains(&waited.retry_after()),
                "{}",
                waited.retry_after()
            );
        }
        // A remembered token still passes, and another address is checked as ever.
        assert_eq!(from("203.0.113.9", &alice).await.status, 200);
        assert_eq!(from("198.51.100.4", &bob).await.status, 200);
        crate::support::assert_metrics(
            &proxy.metrics_text().await,
            &["pagegate_identity_tokens_total{identity=\"api\",outcome=\"throttled\"} 1\n"],
        );
        proxy.stop().await;
    }
}

#[tokio::test]
async fn a_reload_reads_the_key_file_again() {
    let upstream = Upstream::json("[]").await;
    let ed = Signer::ed25519();
    let ed_pem = ed.public_pem();
    let file = key_file("identity-reload", RSA_PUBLIC_PEM);
    let keys = format!("public_key_file: '{}'", file.display());
    let config = yaml(&keys, "[RS256, EdDSA]", "{jwt: api, claim: sub}");
    let proxy = Proxy::start(&config, &upstream).await;
    let by_rsa = Signer::rsa().sign(None, &claims(&json!({"sub": "a"})));
    let by_ed = ed.sign(None, &claims(&json!({"sub": "b"})));
    assert_eq!(bearer(&proxy, "/orders", &by_rsa).await.status, 200);
    assert_eq!(bearer(&proxy, "/orders", &by_ed).await.status, 401);
    std::fs::write(&*file, ed_pem).expect("rotate the key");
    proxy
        .reload(&config, &upstream.url())
        .await
        .expect("reload");
    assert_eq!(bearer(&proxy, "/orders", &by_rsa).await.status, 401);
    assert_eq!(bearer(&proxy, "/orders", &by_ed).await.status, 200);
    proxy.stop().await;
}

/// A JWKS server over HTTPS serving `set`, the identity keys that fetch it (`jwks_url` and
/// the `tls` that trusts it), and the directory of its files (removed when dropped).
async fn jwks_over_https(
    name: &str,
    set: serde_json::Value,
) -> (JwksServer, String, crate::support::Scratch) {
    let dir = crate::support::scratch_dir(name);
    let ca = Ca::new("jwks test CA");
    let ca_file = ca.write(&dir, "ca");
    let server_identity = ca.issue(&["localhost"], &dir, "jwks");
    let jwks = JwksServer::start(&server_identity, set).await;
    let keys = format!(
        "jwks_url: '{}', tls: {{ca_file: '{}'}}",
        jwks.url(),
        ca_file.display()
    );
    (jwks, keys, dir)
}

/// `token`'s answer once the set is fetched: it is fetched when the identity is built, so the
/// first request may find none yet (503).
async fn once_fetched(proxy: &Proxy, token: &str) -> Got {
    let mut got = bearer(proxy, "/orders", token).await;
    for _ in 0..50 {
        if got.status != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        got = bearer(proxy, "/orders", token).await;
    }
    got
}

#[tokio::test]
async fn a_remembered_token_is_verified_again_once_its_key_left_the_set() {
    let upstream = Upstream::json("[]").await;
    let (first, second) = (Signer::es256(), Signer::es256());
    let (jwks, at, _files) =
        jwks_over_https("identity-jwks-cache", json!({"keys": [first.jwk("k1")]})).await;
    let keys = format!("{at}, jwks_min_refresh: 1s, jwks_refresh: 1h, token_cache: 100");
    let proxy = Proxy::start(&yaml(&keys, "[ES256]", "{jwt: api, claim: sub}"), &upstream).await;
    let by_first = first.sign(Some("k1"), &claims(&json!({"sub": "a"})));
    assert_eq!(once_fetched(&proxy, &by_first).await.status, 200);
    assert_eq!(
        bearer(&proxy, "/orders", &by_first).await.status,
        200,
        "remembered"
    );
    // The issuer replaces k1 by k2; a token of k2 has the set fetched again.
    jwks.set(json!({"keys": [second.jwk("k2")]}));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let by_second = second.sign(Some("k2"), &claims(&json!({"sub": "b"})));
    assert_eq!(bearer(&proxy, "/orders", &by_second).await.status, 200);
    assert_eq!(jwks.fetches(), 2);
    // The remembered token was verified by a key the set no longer has: refused.
    assert_refused(
        &bearer(&proxy, "/orders", &by_first).await,
        "invalid-token",
        r#"Bearer error="invalid_token""#,
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_token_whose_kid_a_slow_fetch_may_bring_waits_for_it_and_is_not_refused() {
    let upstream = Upstream::json("[]").await;
    let (first, second) = (Signer::es256(), Signer::es256());
    let (jwks, at, _files) =
        jwks_over_https("identity-jwks-slow", json!({"keys": [first.jwk("k1")]})).await;
    let keys = format!("{at}, jwks_min_refresh: 1s, jwks_refresh: 1h");
    let proxy = Proxy::start(&yaml(&keys, "[ES256]", "{jwt: api, claim: sub}"), &upstream).await;
    let by_first = first.sign(Some("k1"), &claims(&json!({"sub": "a"})));
    assert_eq!(once_fetched(&proxy, &by_first).await.status, 200);
    // The issuer rotates to k2, and its JWKS endpoint now answers in 1.6 s: longer than the
    // second a request waits for the fetch it started.
    jwks.set(json!({"keys": [second.jwk("k2")]}));
    jwks.delay(Duration::from_millis(1600));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let by_second = second.sign(Some("k2"), &claims(&json!({"sub": "b"})));
    let other = second.sign(Some("k2"), &claims(&json!({"sub": "c"})));
    // The one that started the fetch, and one that comes while it runs: keys unavailable
    // (503, try again), not a bad token (401, which tells a client to get another).
    let (started, meanwhile) = tokio::join!(bearer(&proxy, "/orders", &by_second), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        bearer(&proxy, "/orders", &other).await
    });
    for got in [started, meanwhile] {
        let problem = got.problem(503);
        assert_eq!(problem["type"], "urn:pagegate:problem:identity-unavailable");
    }
    // Once the fetch has landed, both are served.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(bearer(&proxy, "/orders", &by_second).await.status, 200);
    assert_eq!(bearer(&proxy, "/orders", &other).await.status, 200);
    assert_eq!(jwks.fetches(), 2);
    proxy.stop().await;
}

#[tokio::test]
async fn a_jwks_url_fetched_again_unchanged_keeps_the_remembered_tokens() {
    let upstream = Upstream::json("[]").await;
    let signer = Signer::es256();
    let (jwks, at, _files) =
        jwks_over_https("identity-jwks-same", json!({"keys": [signer.jwk("k1")]})).await;
    let keys = format!("{at}, jwks_min_refresh: 1s, jwks_refresh: 1h, token_cache: 100");
    let proxy = Proxy::start(&yaml(&keys, "[ES256]", "{jwt: api, claim: sub}"), &upstream).await;
    let token = signer.sign(Some("k1"), &claims(&json!({"sub": "a"})));
    assert_eq!(once_fetched(&proxy, &token).await.status, 200);
    assert_eq!(bearer(&proxy, "/orders", &token).await.status, 200);
    // A made-up kid has the set fetched again; the issuer's body has not changed.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let made_up = signer.sign(Some("k9"), &claims(&json!({"sub": "b"})));
    assert_eq!(bearer(&proxy, "/orders", &made_up).await.status, 401);
    assert_eq!(jwks.fetches(), 2);
    // The same set is kept, so the token is still remembered, not verified again (and past
    // the gate, its third request meets the rate of two).
    assert_eq!(bearer(&proxy, "/orders", &token).await.status, 429);
    let series = |kind: &str, outcome: &str, n: u32| {
        format!("pagegate_{kind}_total{{identity=\"api\",outcome=\"{outcome}\"}} {n}\n")
    };
    crate::support::assert_metrics(
        &proxy.metrics_text().await,
        &[
            &series("identity_tokens", "verified", 1),
            &series("identity_tokens", "remembered", 2),
            &series("identity_tokens", "refused", 1),
            &series("jwks_fetches", "changed", 1),
            &series("jwks_fetches", "unchanged", 1),
            &series("jwks_fetches", "failed", 0),
        ],
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_reload_that_fetches_the_set_otherwise_keeps_its_keys_while_the_issuer_fails() {
    let upstream = Upstream::json("[]").await;
    let signer = Signer::es256();
    let (jwks, at, _files) =
        jwks_over_https("identity-jwks-reload", json!({"keys": [signer.jwk("k1")]})).await;
    let config = yaml(
        &format!("{at}, jwks_refresh: 1h"),
        "[ES256]",
        "{jwt: api, claim: sub}",
    );
    let proxy = Proxy::start(&config, &upstream).await;
    let token = |sub: &str| signer.sign(Some("k1"), &claims(&json!({ "sub": sub })));
    assert_eq!(once_fetched(&proxy, &token("a")).await.status, 200);
    // The issuer fails, and a reload changes how the set is fetched (as a rotated client
    // certificate changes its TLS): the new fetcher fails, and starts from the keys so far.
    jwks.fail_with(503);
    let before = jwks.fetches();
    let other = config.replace("jwks_refresh: 1h", "jwks_refresh: 2h");
    proxy.reload(&other, &upstream.url()).await.expect("reload");
    for _ in 0..100 {
        if jwks.fetches() > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(jwks.fetches() > before, "the new fetcher tried");
    assert_eq!(bearer(&proxy, "/orders", &token("b")).await.status, 200);
    proxy.stop().await;
}

#[tokio::test]
async fn a_jwks_url_is_fetched_again_for_an_unknown_kid_at_most_once_per_min_refresh() {
    let upstream = Upstream::json("[]").await;
    let (first, second) = (Signer::es256(), Signer::ed25519());
    let (jwks, at, _files) =
        jwks_over_https("identity-jwks", json!({"keys": [first.jwk("k1")]})).await;
    let keys = format!("{at}, jwks_min_refresh: 3s, jwks_refresh: 1h");
    let proxy = Proxy::start(
        &yaml(&keys, "[ES256, EdDSA]", "{jwt: api, claim: sub}"),
        &upstream,
    )
    .await;
    let by_first = first.sign(Some("k1"), &claims(&json!({"sub": "a"})));
    let by_second = second.sign(Some("k2"), &claims(&json!({"sub": "b"})));
    let got = once_fetched(&proxy, &by_first).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(jwks.fetches(), 1);
    // The issuer rotates in k2: within 3 s of the last fetch, k2 is unknown and not fetched.
    jwks.set(json!({"keys": [first.jwk("k1"), second.jwk("k2")]}));
    assert_refused(
        &bearer(&proxy, "/orders", &by_second).await,
        "invalid-token",
        r#"Bearer error="invalid_token""#,
    );
    assert_eq!(jwks.fetches(), 1, "no fetch within jwks_min_refresh");
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(bearer(&proxy, "/orders", &by_second).await.status, 200);
    assert_eq!(jwks.fetches(), 2, "one fetch for the unknown kid");
    // A flood of made-up kids costs no fetch.
    for i in 0..20 {
        let made_up = second.sign(Some(&format!("x{i}")), &claims(&json!({"sub": "c"})));
        assert_eq!(bearer(&proxy, "/orders", &made_up).await.status, 401);
    }
    assert_eq!(jwks.fetches(), 2);
    // The server fails: the last good set is kept.
    jwks.fail_with(500);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let unknown = second.sign(Some("k3"), &claims(&json!({"sub": "d"})));
    assert_eq!(bearer(&proxy, "/orders", &unknown).await.status, 401);
    assert_eq!(jwks.fetches(), 3);
    let again = first.sign(Some("k1"), &claims(&json!({"sub": "e"})));
    assert_eq!(bearer(&proxy, "/orders", &again).await.status, 200);
    assert_eq!(bearer(&proxy, "/orders", &by_second).await.status, 200);
    proxy.stop().await;
}

#[tokio::test]
async fn a_kid_the_set_lacks_is_fetched_even_when_keys_naming_none_could_be_tried() {
    let upstream = Upstream::json("[]").await;
    let (old, new) = (Signer::es256(), Signer::es256());
    let mut unnamed = old.jwk("k1");
    unnamed.as_object_mut().expect("a JWK").remove("kid");
    let (jwks, at, _files) =
        jwks_over_https("identity-jwks-unnamed", json!({"keys": [unnamed]})).await;
    let keys = format!("{at}, jwks_min_refresh: 1s, jwks_refresh: 1h");
    let proxy = Proxy::start(&yaml(&keys, "[ES256]", "{jwt: api, claim: sub}"), &upstream).await;
    let by_old = old.sign(Some("k1"), &claims(&json!({"sub": "a"})));
    assert_eq!(once_fetched(&proxy, &by_old).await.status, 200);
    // The issuer rotates in a key named k2; a token naming it is fetched for, although the
    // key naming none is of its family.
    jwks.set(json!({"keys": [old.jwk("k1"), new.jwk("k2")]}));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let by_new = new.sign(Some("k2"), &claims(&json!({"sub": "b"})));
    assert_eq!(bearer(&proxy, "/orders", &by_new).await.status, 200);
    assert_eq!(jwks.fetches(), 2);
    proxy.stop().await;
}

#[tokio::test]
async fn a_jwks_url_that_never_answered_gets_503_not_401() {
    let upstream = Upstream::json("[]").await;
    let signer = Signer::es256();
    let (jwks, at, _files) =
        jwks_over_https("identity-jwks-down", json!({"keys": [signer.jwk("k1")]})).await;
    jwks.fail_with(503);
    let keys = at;
    let proxy = Proxy::start(&yaml(&keys, "[ES256]", "{jwt: api, claim: sub}"), &upstream).await;
    let token = signer.sign(Some("k1"), &claims(&json!({"sub": "a"})));
    let got = bearer(&proxy, "/orders", &token).await;
    assert_eq!(
        got.problem(503)["type"],
        "urn:pagegate:problem:identity-unavailable"
    );
    assert!(got.retry_after() > 0);
    assert!(upstream.seen().is_empty());
    proxy.stop().await;
    // A route that serves anonymous requests serves this one as one: keyed by its address,
    // which a request with no token shares.
    let key = "{jwt: api, claim: sub, anonymous: client}";
    let proxy = Proxy::start(&yaml(&keys, "[ES256]", key), &upstream).await;
    assert_eq!(bearer(&proxy, "/orders", &token).await.status, 200);
    assert_eq!(crate::support::get(&proxy.url("/orders")).await.status, 200);
    assert_eq!(bearer(&proxy, "/orders", &token).await.status, 429);
    proxy.stop().await;
}

#[tokio::test]
async fn a_table_scoped_by_a_claim_serves_each_tenant_its_own_rows() {
    let pg = Postgres::start();
    let t = pg.name("claim_scoped");
    pg.execute(&format!(
        "CREATE TABLE {t} (id bigint PRIMARY KEY, tenant text NOT NULL, v text);
         INSERT INTO {t} SELECT g, 't' || (g % 3), 'v' || g FROM generate_series(1, 60) g;
         CREATE INDEX ON {t} (tenant, id);"
    ))
    .await;
    let file = key_file("identity-table", RSA_PUBLIC_PEM);
    let yaml = format!(
        "cursors: {{keys: [{{id: 1, secret: test-secret-test-secret-test-secret-0123}}]}}
identities:
  api: {{algorithms: [RS256], issuer: 'https://issuer.test/', audience: orders, public_key_file: '{}'}}
postgres: {{main: {{url: '{}'}}}}
routes:
  - name: rows
    path: /rows
    table: {{database: main, name: {t}, columns: [id, v], key: [id], scope: {{jwt: api, claim: tenant, column: tenant}}}}
",
        file.display(),
        pg.url
    );
    let proxy = Proxy::start_url(&yaml, "http://127.0.0.1:9").await;
    let rsa = Signer::rsa();
    let t1 = rsa.sign(None, &claims(&json!({"sub": "a", "tenant": "t1"})));
    let ids = |got: &Got| -> Vec<i64> {
        assert_eq!(got.status, 200, "{}", got.text());
        got.json()["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|r| r["id"].as_i64().expect("id"))
            .collect()
    };
    let got = get_with(
        &proxy,
        "/rows?limit=100",
        &[
            ("authorization", format!("Bearer {t1}")),
            ("x-tenant", "t2".to_owned()),
        ],
    )
    .await;
    let expected: Vec<i64> = (1..=60).filter(|g| g % 3 == 1).collect();
    assert_eq!(ids(&got), expected);
    // The export too, and a token without the claim or none at all is refused.
    let export = bearer(&proxy, "/rows/export?format=ndjson", &t1).await;
    assert_eq!(export.status, 200);
    assert_eq!(export.text().lines().count(), expected.len());
    let no_claim = rsa.sign(None, &claims(&json!({"sub": "a"})));
    assert_eq!(bearer(&proxy, "/rows", &no_claim).await.status, 403);
    assert_eq!(crate::support::get(&proxy.url("/rows")).await.status, 401);
    // A cursor of tenant t1 does not page another tenant's rows.
    let page = bearer(&proxy, "/rows?limit=5", &t1).await.json();
    let cursor = page["next_cursor"].as_str().expect("a cursor");
    let t2 = rsa.sign(None, &claims(&json!({"sub": "b", "tenant": "t2"})));
    let got = bearer(&proxy, &format!("/rows?limit=5&cursor={cursor}"), &t2).await;
    assert_eq!(got.status, 400, "{}", got.text());
    proxy.stop().await;
}

/// The problems `Config::parse` reports for `identities` and `key`, one line each.
fn problems(identity: &str, key: &str) -> String {
    let yaml = format!(
        "identities:\n  api: {identity}\nupstreams: {{app: {{url: 'http://127.0.0.1:9'}}}}\nroutes:\n  - {{name: r, path: /r, upstream: app, limits: {{key: {key}, rate: {{per_client: {{requests: 1, per: 1s}}}}}}}}\n"
    );
    match pagegate::Config::parse("t.yaml", &yaml) {
        Ok(_) => panic!("expected problems for:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

/// Identity configs with a mistake, the key that reads them, where the problem is reported
/// and what its fix says.
fn cases(pem: &str) -> Vec<(String, &'static str, &'static str, &'static str)> {
    let good = format!("{{algorithms: [RS256], issuer: i, audience: a, {pem}}}");
    let key = "{jwt: api, claim: sub}";
    vec![
        (
            good.clone(),
            "{jwt: other, claim: sub}",
            "t.yaml:5:",
            "names `other`, which is not under `identities`: declare it there, or use one of api",
        ),
        (
            format!("{{issuer: i, audience: a, {pem}}}"),
            key,
            "t.yaml:2:",
            "list the algorithms your issuer signs with",
        ),
        (
            format!("{{algorithms: [RS256, none], issuer: i, audience: a, {pem}}}"),
            key,
            "t.yaml:2:",
            "\"none\" is not one",
        ),
        (
            format!("{{algorithms: [HS256], issuer: i, audience: a, {pem}}}"),
            key,
            "t.yaml:2:",
            "a public key is never used as an HMAC secret",
        ),
        (
            format!("{{algorithms: [ES256], issuer: i, audience: a, {pem}}}"),
            key,
            "t.yaml:2:",
            "lists no algorithm of the keys' type",
        ),
        (
            format!("{{algorithms: [RS256], issuer: i, {pem}}}"),
            key,
            "t.yaml:2:",
            "`audience` is missing",
        ),
        (
            "{algorithms: [RS256], issuer: i, audience: a, jwks_url: 'http://auth/jwks'}"
                .to_owned(),
            key,
            "t.yaml:2:",
            "write the https:// URL",
        ),
        (
            "{algorithms: [HS256], issuer: i, audience: a, secret_env: PAGEGATE_SURELY_UNSET_VAR}"
                .to_owned(),
            key,
            "t.yaml:2:",
            "which is not set",
        ),
        (
            format!("{{algorithms: [RS256], issuer: i, audience: a, {pem}, jwks_min_refresh: 1s}}"),
            key,
            "t.yaml:2:",
            "applies only with `jwks_url`",
        ),
        (
            "{algorithms: [RS256], issuer: i, audience: a, public_key_file: /nonexistent.pem}"
                .to_owned(),
            key,
            "t.yaml:2:",
            "cannot be read",
        ),
        (
            good,
            "{jwt: api, claim: ''}",
            "t.yaml:5:",
            "is empty: name the claim",
        ),
    ]
}

/// More of them: bounds and key files.
fn bounds_cases(
    pem: &str,
    private: &std::path::Path,
) -> Vec<(String, &'static str, &'static str, &'static str)> {
    let key = "{jwt: api, claim: sub}";
    vec![
        (
            format!("{{algorithms: [RS256], issuer: i, audience: a, {pem}, leeway: 1h}}"),
            key,
            "t.yaml:2:",
            "at most 5m",
        ),
        (
            format!("{{algorithms: [RS256], issuer: i, audience: a, {pem}, token_cache: 2000000}}"),
            key,
            "t.yaml:2:",
            "verified tokens to remember",
        ),
        (
            "{algorithms: [RS256], issuer: i, audience: a, jwks_url: 'https://a/j', jwks_refresh: 1s}"
                .to_owned(),
            key,
            "t.yaml:2:",
            "keep it between 10s and 86400s",
        ),
        (
            format!("{{algorithms: [RS256], issuer: i, audience: a, public_key_file: '{}'}}", private.display()),
            key,
            "t.yaml:2:",
            "holds a private key",
        ),
    ]
}

fn private_key_file() -> KeyFile {
    key_file("identity-private", crate::support::jwt::RSA_PRIVATE_PEM)
}

#[test]
fn identity_mistakes_are_located_with_their_fix() {
    let file = key_file("identity-config", RSA_PUBLIC_PEM);
    let pem = format!("public_key_file: '{}'", file.display());
    let private = private_key_file();
    for (identity, key, at, fix) in cases(&pem).into_iter().chain(bounds_cases(&pem, &private)) {
        let text = problems(&identity, key);
        assert!(
            text.contains(at) && text.contains(fix),
            "{identity} / {key}:\n{text}\nshould say {at} … {fix}"
        );
    }
}
