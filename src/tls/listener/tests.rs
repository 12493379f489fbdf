//! [`Transport`] over in-memory sockets: the handshake runs inside the first read, a failed
//! handshake fails that read and every later one, and closing before the handshake is quiet.

use std::sync::Arc;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, duplex};

use prometheus_client::metrics::counter::Counter;

use super::{ListenerTls, Transport, server_config};
use crate::tls::Identity;

/// A listener identity for `localhost`, and the client config that trusts it.
fn pair() -> (Arc<rustls::ServerConfig>, rustls::ClientConfig) {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("pagegate-transport-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    let (cert_file, key_file) = (dir.join("c.pem"), dir.join("k.pem"));
    std::fs::write(&cert_file, cert.pem()).expect("write");
    std::fs::write(&key_file, key.serialize_pem()).expect("write");
    let identity = Identity::read(&cert_file, &key_file).expect("identity");
    let tls = ListenerTls {
        identity,
        client_ca: None,
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).expect("root");
    let client = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let _ = std::fs::remove_dir_all(&dir);
    (server_config(&tls, None).expect("server"), client)
}

#[tokio::test]
async fn the_handshake_runs_inside_the_first_read() {
    let (server, client) = pair();
    let (near, far) = duplex(64 * 1024);
    let mut transport = Transport::new(
        near,
        Some(&server),
        (Counter::default(), &Arc::default(), None),
    );
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let client = tokio::spawn(async move {
        let mut tls = connector
            .connect(name, far)
            .await
            .expect("client handshake");
        tls.write_all(b"GET / HTTP/1.1\r\n").await.expect("write");
        tls.flush().await.expect("flush");
        let mut answer = [0u8; 2];
        tls.read_exact(&mut answer).await.expect("read");
        answer
    });
    let mut head = [0u8; 16];
    transport
        .read_exact(&mut head)
        .await
        .expect("plaintext after the handshake");
    assert_eq!(&head, b"GET / HTTP/1.1\r\n");
    assert!(matches!(transport, Transport::Tls(_)));
    transport.write_all(b"ok").await.expect("write");
    transport.flush().await.expect("flush");
    assert_eq!(&client.await.expect("client"), b"ok");
}

#[tokio::test]
async fn a_failed_handshake_fails_every_read_after_it() {
    let (server, _) = pair();
    let (near, mut far) = duplex(1024);
    let failed = Counter::default();
    let mut transport =
        Transport::new(near, Some(&server), (failed.clone(), &Arc::default(), None));
    // Plain HTTP to a TLS listener.
    far.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 8];
    assert!(transport.read(&mut buf).await.is_err(), "not TLS");
    assert!(matches!(transport, Transport::Failed));
    assert_eq!(failed.get(), 1, "counted once");
    let again = transport.read(&mut buf).await.expect_err("still failed");
    assert_eq!(again.kind(), std::io::ErrorKind::NotConnected);
    transport
        .shutdown()
        .await
        .expect("closing a failed socket is quiet");
}

#[tokio::test]
async fn plaintext_passes_untouched() {
    let (near, mut far) = duplex(1024);
    let mut transport = Transport::new(near, None, (Counter::default(), &Arc::default(), None));
    far.write_all(b"abc").await.expect("write");
    let mut buf = [0u8; 3];
    transport.read_exact(&mut buf).await.expect("read");
    assert_eq!(&buf, b"abc");
    assert!(matches!(transport, Transport::Plain(_)));
}
