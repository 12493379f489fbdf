//! `secret_env` (HS256) through a real `pagegate run` whose environment holds the secret: the
//! in-process harness cannot set a variable (`set_var` is unsafe, `unsafe_code` forbidden), so
//! this identity is tested on a process of its own.

use bytes::Bytes;
use serde_json::json;

use crate::support::jwt::{Signer, claims};
use crate::support::process::Replica;
use crate::support::{Got, Upstream};

const SECRET: &str = "a-shared-secret-of-at-least-32-bytes!!";

async fn bearer(replica: &Replica, token: &str) -> Got {
    let request = http::Request::get(replica.url("/orders"))
        .header("authorization", format!("Bearer {token}"))
        .body(crate::support::full(Bytes::new()))
        .expect("request");
    crate::support::send(request).await
}

#[tokio::test]
async fn a_secret_from_the_environment_verifies_hs256_tokens_and_keys_the_rate() {
    let upstream = Upstream::json("[]").await;
    let yaml = format!(
        "identities:
  api: {{algorithms: [HS256], issuer: 'https://issuer.test/', audience: orders, secret_env: PAGEGATE_TEST_JWT_SECRET}}
upstreams: {{app: {{url: '{}'}}}}
routes:
  - name: orders
    path: /orders
    upstream: app
    limits: {{key: {{jwt: api, claim: sub}}, rate: {{per_client: {{requests: 2, per: 1m}}}}}}
",
        upstream.url()
    );
    let replica = Replica::start_with_env(&yaml, &[("PAGEGATE_TEST_JWT_SECRET", SECRET)]);
    let signer = Signer::hs256(SECRET.as_bytes());
    let alice = signer.sign(None, &claims(&json!({"sub": "alice"})));
    let bob = signer.sign(None, &claims(&json!({"sub": "bob"})));
    for _ in 0..2 {
        assert_eq!(bearer(&replica, &alice).await.status, 200);
    }
    bearer(&replica, &alice).await.problem(429);
    assert_eq!(bearer(&replica, &bob).await.status, 200);
    // Another secret, or a public-key algorithm: refused before the backend.
    let forged = Signer::hs256(b"another-secret-of-at-least-32-bytes-long")
        .sign(None, &claims(&json!({"sub": "mallory"})));
    let refused = bearer(&replica, &forged).await;
    assert_eq!(
        refused.problem(401)["type"],
        "urn:pagegate:problem:invalid-token"
    );
    let rsa = Signer::rsa().sign(None, &claims(&json!({"sub": "mallory"})));
    bearer(&replica, &rsa).await.problem(401);
    assert_eq!(
        upstream.seen().len(),
        3,
        "only good tokens within the rate got through"
    );
}
