//! TLS for the tests: a CA made in the test (rcgen) that issues server and client
//! certificates written to files, an HTTPS client that trusts chosen CAs (HTTP/1.1 or h2 by
//! ALPN), and an HTTPS backend that records what each handshake said (SNI, ALPN, a client
//! certificate).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use pagegate::Body;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpListener;

use super::{Got, full, json_response};

/// A certificate authority of the test's own.
pub struct Ca {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    /// Its certificate, PEM.
    pub pem: String,
}

/// When every certificate [`Ca::issue`] makes expires: 2030-01-01T00:00:00Z.
pub const NOT_AFTER: u64 = 1_893_456_000;

/// A certificate and its key, PEM, as written to files.
#[derive(Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let key = rcgen::KeyPair::generate().expect("ca key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let issuer = rcgen::CertifiedIssuer::self_signed(params, key).expect("ca");
        let pem = issuer.pem();
        Self { issuer, pem }
    }

    /// A CA this one signs (an intermediate).
    pub fn intermediate(&self, name: &str) -> Self {
        self.intermediate_valid(name, (1975, 2040))
    }

    /// As [`Ca::intermediate`], valid from the first of January of `years.0` to that of
    /// `years.1`.
    pub fn intermediate_valid(&self, name: &str, years: (i32, i32)) -> Self {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.not_before = rcgen::date_time_ymd(years.0, 1, 1);
        params.not_after = rcgen::date_time_ymd(years.1, 1, 1);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let issuer = rcgen::CertifiedIssuer::signed_by(params, key, &self.issuer).expect("sign");
        let pem = issuer.pem();
        Self { issuer, pem }
    }

    /// Writes the CA's certificate to `dir/name`.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, &self.pem).expect("write ca");
        path
    }

    /// A certificate for `names` (DNS names or IP addresses), written as `dir/stem.crt` and
    /// `dir/stem.key`.
    pub fn issue(&self, names: &[&str], dir: &Path, stem: &str) -> Issued {
        self.issue_valid(names, dir, stem, (1975, 2030))
    }

    /// As [`Ca::issue`], valid from the first of January of `years.0` to that of `years.1`.
    pub fn issue_valid(&self, names: &[&str], dir: &Path, stem: &str, years: (i32, i32)) -> Issued {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .expect("params");
        params.not_before = rcgen::date_time_ymd(years.0, 1, 1);
        params.not_after = rcgen::date_time_ymd(years.1, 1, 1);
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let issued = Issued {
            cert: dir.join(format!("{stem}.crt")),
            key: dir.join(format!("{stem}.key")),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        std::fs::write(&issued.cert, &issued.cert_pem).expect("write cert");
        std::fs::write(&issued.key, &issued.key_pem).expect("write key");
        issued
    }

    pub fn der(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(self.pem.as_bytes()).expect("ca der")
    }
}

impl Issued {
    /// This certificate as a client's in a `tls` block: `, cert_file: '…', key_file: '…'`.
    pub fn client_yaml(&self) -> String {
        format!(
            ", cert_file: '{}', key_file: '{}'",
            self.cert.display(),
            self.key.display()
        )
    }

    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("chain")
    }

    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).expect("key")
    }
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The client side: trusts `cas`, presents `identity` when given, offers `alpn`.
pub fn client_config(
    cas: &[&Ca],
    identity: Option<&Issued>,
    alpn: &[&[u8]],
) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        roots.add(ca.der()).expect("root");
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain(), id.private_key())
            .expect("client cert"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// An HTTPS client of pagegate: HTTP/1.1, or HTTP/2 only (`h2`), each request on a fresh
/// connection when `fresh` (every request then handshakes; in full unless the config
/// resumes sessions: see [`no_resumption`]).
pub fn https_client(
    config: rustls::ClientConfig,
    h2: bool,
    fresh: bool,
) -> Client<HttpsConnector<HttpConnector>, Body> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let names = Arc::new(hyper_rustls::FixedServerNameResolver::new(
        ServerName::try_from("localhost").expect("name"),
    ));
    let connector = HttpsConnector::new(http, config, true, names);
    let mut builder = Client::builder(TokioExecutor::new());
    builder.http2_only(h2);
    if fresh {
        builder.pool_max_idle_per_host(0);
    }
    builder.build(connector)
}

/// `config` without session resumption: every handshake a full one, the certificate sent
/// and checked each time.
pub fn no_resumption(mut config: rustls::ClientConfig) -> rustls::ClientConfig {
    config.resumption = rustls::client::Resumption::disabled();
    config
}

/// Sends a GET over `client` and reads the answer whole, or gives the error.
pub async fn try_get(
    client: &Client<HttpsConnector<HttpConnector>, Body>,
    url: &str,
) -> Result<(Got, http::Version), String> {
    let request = http::Request::get(url)
        .body(full(Bytes::new()))
        .expect("request");
    let response = client
        .request(request)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let version = response.version();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((
        Got {
            status: parts.status,
            headers: parts.headers,
            body,
        },
        version,
    ))
}

/// What an HTTPS backend saw of one handshake and its request.
#[derive(Debug, Clone)]
pub struct Handshake {
    pub sni: Option<String>,
    pub alpn: Option<Vec<u8>>,
    pub client_certificate: bool,
    pub version: http::Version,
    pub forwarded_proto: Option<String>,
}

/// A real HTTPS backend (HTTP/1.1 and h2 by ALPN) answering `{"ok":true}`, with `identity`,
/// asking for client certificates signed by `client_ca` when given.
pub struct TlsBackend {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Handshake>>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// A server's TLS: `identity`'s certificate, a client certificate signed by `client_ca` asked
/// for when given, the `alpn` protocols offered.
pub fn server_config(
    identity: &Issued,
    client_ca: Option<&Ca>,
    alpn: &[&[u8]],
) -> rustls::ServerConfig {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions");
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.der()).expect("root");
            builder.with_client_cert_verifier(
                rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider(),
                )
                .build()
                .expect("verifier"),
            )
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(identity.chain(), identity.private_key())
        .expect("server config");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

impl TlsBackend {
    pub async fn start(identity: &Issued, client_ca: Option<&Ca>) -> Self {
        let config = server_config(identity, client_ca, &[b"h2", b"http/1.1"]);
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen: Arc<Mutex<Vec<Handshake>>> = Arc::default();
        let record = Arc::clone(&seen);
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    _ = &mut stopped => break,
                    accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
                };
                let (acceptor, record) = (acceptor.clone(), Arc::clone(&record));
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let session = tls.get_ref().1;
                    let (sni, alpn) = (
                        session.server_name().map(str::to_owned),
                        session.alpn_protocol().map(<[u8]>::to_vec),
                    );
                    let client_certificate =
                        session.peer_certificates().is_some_and(|c| !c.is_empty());
                    let service =
                        hyper::service::service_fn(move |req: http::Request<Incoming>| {
                            record.lock().expect("lock").push(Handshake {
                                sni: sni.clone(),
                                alpn: alpn.clone(),
                                client_certificate,
                                version: req.version(),
                                forwarded_proto: req
                                    .headers()
                                    .get("x-forwarded-proto")
                                    .and_then(|v| v.to_str().ok())
                                    .map(str::to_owned),
                            });
                            async { Ok::<_, Infallible>(json_response(r#"{"ok":true}"#)) }
                        });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            seen,
            _stop: stop,
        }
    }

    pub fn seen(&self) -> Vec<Handshake> {
        self.seen.lock().expect("lock").clone()
    }
}
