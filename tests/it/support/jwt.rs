//! Tokens for the identity tests: keys of every family pagegate verifies (RSA from a fixed
//! test key, since ring cannot generate one; EC P-256 and Ed25519 made per test; an HMAC
//! secret), JWTs signed by hand with ring (pagegate itself never signs), their JWKs, and an
//! HTTPS JWKS server whose set can change or fail, counting its fetches.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ring::rand::SystemRandom;
use ring::signature::{self, KeyPair as _};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::full;
use super::tls::Issued;

/// A 2048-bit RSA key for tests only (PKCS#8), made with `openssl genpkey`.
pub const RSA_PRIVATE_PEM: &str = include_str!("jwt_rsa.pem");
/// Its public key (SPKI PEM), as `public_key_file` takes it.
pub const RSA_PUBLIC_PEM: &str = include_str!("jwt_rsa.pub.pem");

/// A signing key of one family.
pub enum Signer {
    Rsa(signature::RsaKeyPair),
    Es256(signature::EcdsaKeyPair),
    Ed25519(signature::Ed25519KeyPair),
    Hs256(Vec<u8>),
}

fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("pem base64")
}

impl Signer {
    pub fn rsa() -> Self {
        let der = pem_der(RSA_PRIVATE_PEM);
        Self::Rsa(signature::RsaKeyPair::from_pkcs8(&der).expect("rsa key"))
    }

    pub fn es256() -> Self {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("ec key");
        Self::Es256(signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).expect("ec"))
    }

    pub fn ed25519() -> Self {
        let pkcs8 = signature::Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("ed");
        Self::Ed25519(signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("ed"))
    }

    pub fn hs256(secret: &[u8]) -> Self {
        Self::Hs256(secret.to_vec())
    }

    /// The JWS `alg` it signs with.
    pub fn alg(&self) -> &'static str {
        match self {
            Self::Rsa(_) => "RS256",
            Self::Es256(_) => "ES256",
            Self::Ed25519(_) => "EdDSA",
            Self::Hs256(_) => "HS256",
        }
    }

    /// A compact JWS of `claims` with this header's `alg` (or `alg` to lie) and `kid`.
    pub fn sign_as(&self, alg: &str, kid: Option<&str>, claims: &Value) -> String {
        let mut header = json!({"alg": alg, "typ": "JWT"});
        if let Some(kid) = kid {
            header["kid"] = json!(kid);
        }
        let message = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let rng = SystemRandom::new();
        let sig = match self {
            Self::Rsa(key) => {
                let mut sig = vec![0; key.public().modulus_len()];
                key.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &rng,
                    message.as_bytes(),
                    &mut sig,
                )
                .expect("rsa sign");
                sig
            }
            Self::Es256(key) => key
                .sign(&rng, message.as_bytes())
                .expect("ec sign")
                .as_ref()
                .to_vec(),
            Self::Ed25519(key) => key.sign(message.as_bytes()).as_ref().to_vec(),
            Self::Hs256(secret) => {
                let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
                ring::hmac::sign(&key, message.as_bytes()).as_ref().to_vec()
            }
        };
        format!("{message}.{}", B64.encode(sig))
    }

    pub fn sign(&self, kid: Option<&str>, claims: &Value) -> String {
        self.sign_as(self.alg(), kid, claims)
    }

    /// Its public key as SPKI PEM (Ed25519 only: RSA's is [`RSA_PUBLIC_PEM`]).
    pub fn public_pem(&self) -> String {
        let Self::Ed25519(key) = self else {
            panic!("Ed25519 only")
        };
        // SubjectPublicKeyInfo of an Ed25519 key: a fixed 12-byte prefix, then the key.
        let mut der = vec![
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        der.extend_from_slice(key.public_key().as_ref());
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n")
    }

    /// Its public JWK with `kid`.
    pub fn jwk(&self, kid: &str) -> Value {
        match self {
            Self::Rsa(key) => {
                let c = signature::RsaPublicKeyComponents::<Vec<u8>>::from(key.public());
                json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": B64.encode(&c.n), "e": B64.encode(&c.e)})
            }
            Self::Es256(key) => {
                let point = key.public_key().as_ref();
                json!({"kty": "EC", "kid": kid, "crv": "P-256", "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..])})
            }
            Self::Ed25519(key) => {
                json!({"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": B64.encode(key.public_key().as_ref())})
            }
            Self::Hs256(secret) => json!({"kty": "oct", "kid": kid, "k": B64.encode(secret)}),
        }
    }
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// Claims for issuer `https://issuer.test/` and audience `orders`, valid for 5 minutes, with
/// `extra` merged in (a `null` removes a claim).
pub fn claims(extra: &Value) -> Value {
    let mut claims =
        json!({"iss": "https://issuer.test/", "aud": "orders", "exp": now() + 300, "iat": now()});
    for (k, v) in extra.as_object().expect("an object") {
        if v.is_null() {
            claims.as_object_mut().expect("object").remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    claims
}

/// An HTTPS server of a JWK set that the test can change or make fail.
pub struct JwksServer {
    pub addr: SocketAddr,
    set: Arc<Mutex<Value>>,
    failing: Arc<AtomicU32>,
    fetches: Arc<AtomicU64>,
    /// How long each answer waits (ms).
    delay: Arc<AtomicU64>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl JwksServer {
    pub async fn start(identity: &Issued, set: Value) -> Self {
        let config = rustls::ServerConfig::builder_with_provider(super::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(identity.chain(), identity.private_key())
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let set = Arc::new(Mutex::new(set));
        let (failing, fetches) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU64::new(0)));
        let delay = Arc::new(AtomicU64::new(0));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let served = (Arc::clone(&set), Arc::clone(&failing), Arc::clone(&fetches));
        let served = (served, Arc::clone(&delay));
        tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    _ = &mut stopped => break,
                    accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
                };
                let (acceptor, served) = (acceptor.clone(), served.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |_: http::Request<Incoming>| {
                        let ((set, failing, fetches), delay) = &served;
                        let wait = Duration::from_millis(delay.load(Ordering::SeqCst));
                        fetches.fetch_add(1, Ordering::SeqCst);
                        let status = match failing.load(Ordering::SeqCst) {
                            0 => 200,
                            s => s as u16,
                        };
                        let body = set.lock().expect("lock").to_string();
                        let response = http::Response::builder()
                            .status(status)
                            .header("content-type", "application/json")
                            .body(full(body))
                            .expect("response");
                        async move {
                            tokio::time::sleep(wait).await;
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            set,
            failing,
            fetches,
            delay,
            _stop: stop,
        }
    }

    pub fn url(&self) -> String {
        format!("https://localhost:{}/jwks.json", self.addr.port())
    }

    pub fn set(&self, set: Value) {
        *self.set.lock().expect("lock") = set;
    }

    /// Answer every fetch with `status` (0: the set again).
    pub fn fail_with(&self, status: u32) {
        self.failing.store(status, Ordering::SeqCst);
    }

    /// Answer every fetch after `wait`.
    pub fn delay(&self, wait: Duration) {
        let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        self.delay.store(ms, Ordering::SeqCst);
    }

    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::SeqCst)
    }
}
