//! TLS on both sides, with certificates made in the test (rcgen): the listener serves
//! HTTP/1.1 and h2 by ALPN, refuses clients that trust another CA or lack a client
//! certificate its CA signed, closes a stalled handshake, reloads its files (and refuses to
//! turn TLS on or off), and rotates its certificate under load with no failed request;
//! `https://` upstreams are verified against a CA with SNI and present client certificates.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt as _;

use crate::support::process::Running;
use crate::support::redis::free_port;
use crate::support::tls::{
    Ca, Issued, NOT_AFTER, TlsBackend, client_config, https_client, no_resumption, try_get,
};
use crate::support::{Proxy, Upstream, assert_metrics, get, scratch_dir};

/// pagegate in front of `{upstream}`, serving TLS with `server` (and asking for client
/// certificates signed by the CA in `client_ca`).
fn listener_yaml(server: &Issued, client_ca: Option<&Path>) -> String {
    let client_ca = client_ca.map_or(String::new(), |ca| {
        format!(", client_ca_file: '{}'", ca.display())
    });
    format!(
        "admin: {{listen: 127.0.0.1:0}}\ntls: {{cert_file: '{}', key_file: '{}'{client_ca}}}\n\
         upstreams: {{app: {{url: '{{upstream}}'}}}}\ndefault: {{action: pass, upstream: app}}\n",
        server.cert.display(),
        server.key.display()
    )
}

fn https(proxy: &Proxy, path: &str) -> String {
    format!("https://127.0.0.1:{}{path}", proxy.addr.port())
}

#[tokio::test]
async fn the_listener_serves_http1_and_h2_over_tls() {
    let dir = scratch_dir("tls-listener");
    let ca = Ca::new("listener CA");
    let server = ca.issue(&["localhost"], &dir, "server");
    let upstream = Upstream::json(r#"{"ok":true}"#).await;
    let proxy = Proxy::start(&listener_yaml(&server, None), &upstream).await;

    let h1 = https_client(client_config(&[&ca], None, &[b"http/1.1"]), false, false);
    let (got, version) = try_get(&h1, &https(&proxy, "/hello"))
        .await
        .expect("HTTP/1.1 over TLS");
    assert_eq!(
        (got.status.as_u16(), version),
        (200, http::Version::HTTP_11)
    );
    assert_eq!(got.text(), r#"{"ok":true}"#);
    let seen = upstream.last();
    assert_eq!(
        seen.headers["x-forwarded-proto"], "https",
        "the backend learns the client spoke TLS"
    );
    let forwarded = seen.headers["forwarded"].to_str().expect("ascii");
    assert!(forwarded.contains("proto=https"), "{forwarded}");

    let h2 = https_client(client_config(&[&ca], None, &[b"h2"]), true, false);
    let (got, version) = try_get(&h2, &https(&proxy, "/hello"))
        .await
        .expect("h2 over TLS");
    assert_eq!((got.status.as_u16(), version), (200, http::Version::HTTP_2));

    assert_metrics(
        &proxy.metrics_text().await,
        &[&format!(
            "pagegate_tls_certificate_expiry_timestamp_seconds{{name=\"listener\"}} {NOT_AFTER}"
        )],
    );
    proxy.stop().await;
}

#[tokio::test]
async fn clients_that_trust_another_ca_or_lack_a_signed_certificate_are_refused() {
    let dir = scratch_dir("tls-refused");
    let ca = Ca::new("server CA");
    let clients = Ca::new("clients CA");
    let stranger = Ca::new("stranger CA");
    let server = ca.issue(&["localhost"], &dir, "server");
    let client_ca = clients.write(&dir, "clients.pem");
    let upstream = Upstream::json("{}").await;
    let proxy = Proxy::start(&listener_yaml(&server, Some(&client_ca)), &upstream).await;
    let url = https(&proxy, "/x");
    let good = clients.issue(&["client"], &dir, "client");
    let forged = stranger.issue(&["client"], &dir, "forged");

    let wrong_ca = https_client(
        client_config(&[&stranger], Some(&good), &[b"http/1.1"]),
        false,
        true,
    );
    let refused = try_get(&wrong_ca, &url)
        .await
        .expect_err("the server's CA is not trusted");
    assert!(refused.contains("UnknownIssuer"), "{refused}");
    for identity in [None, Some(&forged)] {
        let client = https_client(client_config(&[&ca], identity, &[b"http/1.1"]), false, true);
        assert!(
            try_get(&client, &url).await.is_err(),
            "client certificate {:?} let through",
            identity.map(|i| &i.cert)
        );
    }
    let trusted = https_client(
        client_config(&[&ca], Some(&good), &[b"http/1.1"]),
        false,
        true,
    );
    let (got, _) = try_get(&trusted, &url)
        .await
        .expect("a client certificate the CA signed");
    assert_eq!(got.status, 200);
    assert_eq!(
        upstream.seen().len(),
        1,
        "no refused client reached the backend"
    );
    let counted = proxy.protections("tls_handshake").await;
    assert!(counted >= 3, "the refusals are counted: {counted}");
    proxy.stop().await;
}

#[tokio::test]
async fn a_stalled_handshake_is_closed_by_the_first_bytes_deadline() {
    let dir = scratch_dir("tls-stall");
    let server = Ca::new("CA").issue(&["localhost"], &dir, "server");
    let upstream = Upstream::json("{}").await;
    let yaml = format!("header_read_timeout: 1s\n{}", listener_yaml(&server, None));
    let proxy = Proxy::start(&yaml, &upstream).await;
    // The first bytes of a ClientHello record, then nothing.
    let mut tcp = tokio::net::TcpStream::connect(proxy.addr)
        .await
        .expect("connect");
    tokio::io::AsyncWriteExt::write_all(&mut tcp, &[0x16, 0x03, 0x01])
        .await
        .expect("write");
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0) | Err(_))),
        "closed, not held: {read:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed by the deadline, not at once"
    );
    assert_eq!(proxy.protections("header_read_timeout").await, 1);
    proxy.stop().await;
}

#[tokio::test]
async fn reload_reads_new_files_and_refuses_turning_tls_on_or_off() {
    let dir = scratch_dir("tls-reload");
    let (old_ca, new_ca) = (Ca::new("old CA"), Ca::new("new CA"));
    let old = old_ca.issue(&["localhost"], &dir, "old");
    let new = new_ca.issue(&["localhost"], &dir, "new");
    let upstream = Upstream::json("{}").await;
    let off = "admin: {listen: 127.0.0.1:0}\nupstreams: {app: {url: '{upstream}'}}\ndefault: {action: pass, upstream: app}\n";
    let plain = Proxy::start(off, &upstream).await;
    let refused = plain
        .reload(&listener_yaml(&old, None), &upstream.url())
        .await
        .expect_err("TLS turned on");
    assert!(
        refused
            .to_string()
            .contains("`tls` cannot change while pagegate runs"),
        "{refused}"
    );
    plain.stop().await;

    let proxy = Proxy::start(&listener_yaml(&old, None), &upstream).await;
    let trusts_new = https_client(client_config(&[&new_ca], None, &[b"http/1.1"]), false, true);
    assert!(
        try_get(&trusts_new, &https(&proxy, "/")).await.is_err(),
        "the old certificate is served"
    );
    proxy
        .reload(&listener_yaml(&new, None), &upstream.url())
        .await
        .expect("new files");
    let (got, _) = try_get(&trusts_new, &https(&proxy, "/"))
        .await
        .expect("the new certificate");
    assert_eq!(got.status, 200);
    let refused = proxy
        .reload(off, &upstream.url())
        .await
        .expect_err("TLS turned off");
    assert!(
        refused.to_string().starts_with("`tls` cannot change"),
        "{refused}"
    );
    proxy.stop().await;
}

/// Publishes `issued` as a Kubernetes Secret volume does: a new `..vN` directory, then the
/// `..data` symlink swapped to it in one rename.
fn publish(secret: &Path, version: &str, issued: &Issued) {
    let data = secret.join(version);
    std::fs::create_dir_all(&data).expect("dir");
    std::fs::copy(&issued.cert, data.join("tls.crt")).expect("cert");
    std::fs::copy(&issued.key, data.join("tls.key")).expect("key");
    let tmp = secret.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(version, &tmp).expect("link");
    std::fs::rename(&tmp, secret.join("..data")).expect("swap");
    for name in ["tls.crt", "tls.key"] {
        let link = secret.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), &link).expect("link");
        }
    }
}

#[tokio::test]
async fn a_certificate_rotated_under_load_fails_no_request() {
    let dir = scratch_dir("tls-rotate");
    let secret = dir.join("secret");
    let (old_ca, new_ca) = (Ca::new("old CA"), Ca::new("new CA"));
    let old = old_ca.issue(&["localhost"], &dir, "old");
    let new = new_ca.issue(&["localhost"], &dir, "new");
    publish(&secret, "..v1", &old);
    let upstream = Upstream::json(r#"{"ok":true}"#).await;
    let (port, admin) = (free_port(), free_port());
    let path = dir.join("pagegate.yaml");
    let yaml = format!(
        "listen: 127.0.0.1:{port}\nadmin: {{listen: 127.0.0.1:{admin}}}\naccess_log: false\n\
         tls: {{cert_file: '{0}/tls.crt', key_file: '{0}/tls.key'}}\n\
         upstreams: {{app: {{url: '{1}'}}}}\ndefault: {{action: pass, upstream: app}}\n",
        secret.display(),
        upstream.url()
    );
    std::fs::write(&path, yaml).expect("config");
    let _running = Running::start(&path, admin, &[]).await;
    let url = format!("https://127.0.0.1:{port}/x");

    // Clients that trust both CAs, each request on a new connection (a new handshake).
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut load = Vec::new();
    for _ in 0..4 {
        let client = https_client(
            no_resumption(client_config(&[&old_ca, &new_ca], None, &[b"http/1.1"])),
            false,
            true,
        );
        let (stop, sent, failed, url) = (
            Arc::clone(&stop),
            Arc::clone(&sent),
            Arc::clone(&failed),
            url.clone(),
        );
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                sent.fetch_add(1, Ordering::Relaxed);
                match try_get(&client, &url).await {
                    Ok((got, _)) if got.status == 200 => {}
                    other => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        eprintln!("failed: {:?}", other.map(|(g, _)| g.status));
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    publish(&secret, "..v2", &new);
    let trusts_new = https_client(client_config(&[&new_ca], None, &[b"http/1.1"]), false, true);
    let deadline = Instant::now() + Duration::from_secs(10);
    while try_get(&trusts_new, &url).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.expect("load");
    }
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(sent > 20, "too little load to tell: {sent} requests");
    assert_eq!(
        failed, 0,
        "{failed} of {sent} requests failed during the rotation"
    );
    let trusts_old = https_client(client_config(&[&old_ca], None, &[b"http/1.1"]), false, true);
    assert!(
        try_get(&trusts_old, &url).await.is_err(),
        "the old certificate is gone"
    );
}

/// Five routes to one HTTPS backend: `good` (its CA, the name its certificate is for, a
/// client certificate), `h2` (the same over HTTP/2), `nocert` (no client certificate),
/// `stranger` (another CA) and `noname` (verified against the URL's IP address).
fn upstreams_yaml(url: &str, (ca, stranger): (&Path, &Path), client: &Issued) -> String {
    let tls = |ca: &Path, cert: bool| {
        let cert = if cert {
            client.client_yaml()
        } else {
            String::new()
        };
        format!(
            "{{ca_file: '{}', server_name: backend.test{cert}}}",
            ca.display()
        )
    };
    format!(
        "admin: {{listen: 127.0.0.1:0}}\nupstreams:\n  good: {{url: '{url}', tls: {}}}\n  h2: {{url: '{url}', http2: true, tls: {}}}\n  \
         nocert: {{url: '{url}', tls: {}}}\n  stranger: {{url: '{url}', tls: {}}}\n  noname: {{url: '{url}', tls: {{ca_file: '{}'}}}}\n\
         routes:\n  - {{name: good, path: /good, upstream: good}}\n  - {{name: h2, path: /h2, upstream: h2}}\n  \
         - {{name: nocert, path: /nocert, upstream: nocert}}\n  - {{name: stranger, path: /stranger, upstream: stranger}}\n  \
         - {{name: noname, path: /noname, upstream: noname}}\ndefault: {{action: deny}}\n",
        tls(ca, true),
        tls(ca, true),
        tls(ca, false),
        tls(stranger, true),
        ca.display(),
    )
}

#[tokio::test]
async fn https_upstreams_are_verified_by_name_and_present_client_certificates() {
    let dir = scratch_dir("tls-upstream");
    let (ca, clients, stranger) = (
        Ca::new("backend CA"),
        Ca::new("clients CA"),
        Ca::new("stranger"),
    );
    let backend = TlsBackend::start(
        &ca.issue(&["backend.test"], &dir, "backend"),
        Some(&clients),
    )
    .await;
    let client = clients.issue(&["pagegate"], &dir, "client");
    let ca_file = ca.write(&dir, "ca.pem");
    let stranger_file = stranger.write(&dir, "stranger.pem");
    let url = format!("https://127.0.0.1:{}", backend.addr.port());
    let yaml = upstreams_yaml(&url, (&ca_file, &stranger_file), &client);
    let proxy = Proxy::start_url(&yaml, "unused").await;

    let got = get(&proxy.url("/good")).await;
    assert_eq!(got.status, 200, "{}", got.text());
    let seen = backend.seen().pop().expect("the backend was reached");
    assert_eq!(
        seen.sni.as_deref(),
        Some("backend.test"),
        "server_name is sent as SNI"
    );
    assert_eq!(seen.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert!(seen.client_certificate);
    assert_eq!(seen.forwarded_proto.as_deref(), Some("http"));

    let got = get(&proxy.url("/h2")).await;
    assert_eq!(got.status, 200, "{}", got.text());
    let seen = backend.seen().pop().expect("the backend was reached");
    assert_eq!(
        (seen.alpn.as_deref(), seen.version),
        (Some(&b"h2"[..]), http::Version::HTTP_2)
    );

    let reached = backend.seen().len();
    for path in ["/nocert", "/stranger", "/noname"] {
        let refused = get(&proxy.url(path)).await;
        assert_eq!(refused.status, 502, "{path}: {}", refused.text());
        let problem = refused.problem(502);
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(
            !detail.contains("certificate"),
            "TLS detail stays in the logs: {detail}"
        );
    }
    assert_eq!(
        backend.seen().len(),
        reached,
        "no request reached the backend unverified"
    );
    assert_metrics(
        &proxy.metrics_text().await,
        &[&format!(
            "pagegate_tls_certificate_expiry_timestamp_seconds{{name=\"upstreams.good\"}} {NOT_AFTER}"
        )],
    );
    proxy.stop().await;
}

/// The listener's `tls` block naming `cert` and `key`.
fn pair(cert: &Path, key: &Path) -> String {
    format!(
        "tls:\n  cert_file: '{}'\n  key_file: '{}'\n",
        cert.display(),
        key.display()
    )
}

#[test]
fn tls_settings_that_cannot_work_are_refused_with_the_file_and_the_fix() {
    let dir = scratch_dir("tls-config");
    let ca = Ca::new("CA");
    let one = ca.issue(&["localhost"], &dir, "one");
    let two = ca.issue(&["localhost"], &dir, "two");
    // A chain in the wrong order (an intermediate first), and an encrypted key.
    let leaf = ca
        .intermediate("intermediate")
        .issue(&["localhost"], &dir, "leaf");
    let backwards = dir.join("backwards.crt");
    let intermediate_pem = ca.intermediate("other").pem;
    std::fs::write(&backwards, format!("{intermediate_pem}{}", leaf.cert_pem)).expect("write");
    let encrypted = dir.join("encrypted.key");
    let pem = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n";
    std::fs::write(&encrypted, pem).expect("write");
    let (cert, key) = (
        "test.yaml:3:14: `cert_file` is",
        "test.yaml:4:13: `key_file` is",
    );
    let cases = [
        (
            pair(&dir.join("missing.crt"), &one.key),
            cert,
            "which cannot be read",
        ),
        (pair(&one.cert, &two.key), key, "is not the key of"),
        (pair(&one.key, &one.key), cert, "holds no PEM certificate"),
        (
            pair(&backwards, &leaf.key),
            cert,
            "put the server's own certificate first",
        ),
        (
            pair(&one.cert, &encrypted),
            key,
            "holds an encrypted private key",
        ),
    ];
    for (yaml, at, what) in &cases {
        let yaml = format!("upstreams: {{app: {{url: 'http://127.0.0.1:9'}}}}\n{yaml}");
        let error = pagegate::Config::parse("test.yaml", &yaml)
            .expect_err("refused")
            .to_string();
        assert!(
            error.contains(at) && error.contains(what),
            "{at} … {what} not in:\n{error}"
        );
        assert_eq!(
            error.lines().count(),
            1,
            "one root cause, one line:\n{error}"
        );
    }
}

#[test]
fn upstream_tls_settings_that_cannot_work_are_refused() {
    let dir = scratch_dir("tls-upstream-config");
    let one = Ca::new("CA").issue(&["localhost"], &dir, "one");
    let upstream = |tls: &str| {
        let yaml = format!("upstreams: {{app: {{url: 'http://127.0.0.1:9', tls: {tls}}}}}\n");
        pagegate::Config::parse("test.yaml", &yaml)
            .expect_err("refused")
            .to_string()
    };
    let error = upstream("{}");
    assert!(error.contains("write the url with https://"), "{error}");
    let yaml = format!(
        "upstreams: {{app: {{url: 'https://127.0.0.1:9', tls: {{cert_file: '{}'}}}}}}\n",
        one.cert.display()
    );
    let error = pagegate::Config::parse("test.yaml", &yaml)
        .expect_err("refused")
        .to_string();
    assert!(
        error.contains("`cert_file` is set without key_file"),
        "{error}"
    );
}

#[tokio::test]
async fn a_reload_that_changes_the_client_ca_lets_no_earlier_session_resume() {
    let dir = scratch_dir("tls-resume");
    let (ca, first, second) = (
        Ca::new("server CA"),
        Ca::new("first clients"),
        Ca::new("second clients"),
    );
    let server = ca.issue(&["localhost"], &dir, "server");
    let (first_file, second_file) = (
        first.write(&dir, "first.pem"),
        second.write(&dir, "second.pem"),
    );
    let upstream = Upstream::json("{}").await;
    let proxy = Proxy::start(&listener_yaml(&server, Some(&first_file)), &upstream).await;
    let url = https(&proxy, "/");
    // A client of the first CA, resuming its sessions: its certificate is sent only in full
    // handshakes.
    let client_cert = first.issue(&["client"], &dir, "client");
    let resuming = https_client(
        client_config(&[&ca], Some(&client_cert), &[b"http/1.1"]),
        false,
        true,
    );
    for _ in 0..3 {
        let (got, _) = try_get(&resuming, &url)
            .await
            .expect("a client the first CA signed");
        assert_eq!(got.status, 200);
    }
    proxy
        .reload(&listener_yaml(&server, Some(&second_file)), &upstream.url())
        .await
        .expect("new CA");
    assert!(
        try_get(&resuming, &url).await.is_err(),
        "a session from before the reload resumed past the new client CA"
    );
    // Clients of the new CA get in.
    let second_cert = second.issue(&["client"], &dir, "second-client");
    let again = https_client(
        client_config(&[&ca], Some(&second_cert), &[b"http/1.1"]),
        false,
        true,
    );
    try_get(&again, &url).await.expect("the second CA's client");
    proxy.stop().await;
}

#[tokio::test]
async fn a_config_naming_files_not_there_yet_applies_once_they_are() {
    let dir = scratch_dir("tls-later");
    let (old_ca, new_ca) = (Ca::new("old CA"), Ca::new("new CA"));
    let old = old_ca.issue(&["localhost"], &dir, "old");
    let upstream = Upstream::json("{}").await;
    let (port, admin) = (free_port(), free_port());
    let path = dir.join("pagegate.yaml");
    let yaml = |cert: &Path, key: &Path| {
        format!(
            "listen: 127.0.0.1:{port}\nadmin: {{listen: 127.0.0.1:{admin}}}\n\
             tls: {{cert_file: '{}', key_file: '{}'}}\n\
             upstreams: {{app: {{url: '{}'}}}}\ndefault: {{action: pass, upstream: app}}\n",
            cert.display(),
            key.display(),
            upstream.url()
        )
    };
    std::fs::write(&path, yaml(&old.cert, &old.key)).expect("config");
    let running = Running::start(&path, admin, &[]).await;
    // The config moves to a directory that does not exist yet: refused, and tried again.
    let later = dir.join("later");
    std::fs::write(&path, yaml(&later.join("tls.crt"), &later.join("tls.key"))).expect("config");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !running
        .admin("/metrics")
        .await
        .text()
        .contains("pagegate_reloads_total{result=\"failed\"}")
    {
        assert!(Instant::now() < deadline, "the change was not tried");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::fs::create_dir(&later).expect("dir");
    let new = new_ca.issue(&["localhost"], &later, "tls");
    assert_eq!(new.cert, later.join("tls.crt"));
    let url = format!("https://127.0.0.1:{port}/");
    let trusts_new = https_client(
        no_resumption(client_config(&[&new_ca], None, &[b"http/1.1"])),
        false,
        true,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while try_get(&trusts_new, &url).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the files that appeared were never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_https_upstream_by_address_is_verified_against_the_address() {
    let dir = scratch_dir("tls-ip");
    let ca = Ca::new("backend CA");
    let backend = TlsBackend::start(&ca.issue(&["127.0.0.1"], &dir, "backend"), None).await;
    let yaml = format!(
        "upstreams: {{app: {{url: 'https://127.0.0.1:{}', tls: {{ca_file: '{}'}}}}}}\n\
         default: {{action: pass, upstream: app}}\n",
        backend.addr.port(),
        ca.write(&dir, "ca.pem").display()
    );
    let proxy = Proxy::start_url(&yaml, "unused").await;
    let got = get(&proxy.url("/")).await;
    assert_eq!(got.status, 200, "{}", got.text());
    let seen = backend.seen().pop().expect("reached");
    assert_eq!(seen.sni, None, "an address is verified, not sent as SNI");
    proxy.stop().await;
}

#[tokio::test]
async fn a_reload_never_swaps_a_valid_certificate_for_one_that_cannot_be_presented() {
    let dir = scratch_dir("tls-validity");
    let ca = Ca::new("validity CA");
    let valid = ca.issue(&["localhost"], &dir, "valid");
    let expired = ca.issue_valid(&["localhost"], &dir, "expired", (2019, 2020));
    let early = ca.issue_valid(&["localhost"], &dir, "early", (2098, 2099));
    let upstream = Upstream::json("{}").await;
    let proxy = Proxy::start(&listener_yaml(&valid, None), &upstream).await;
    for (issued, why) in [
        (&expired, "expired 2020-01-01"),
        (&early, "is not valid before 2098"),
    ] {
        let refused = proxy
            .reload(&listener_yaml(issued, None), &upstream.url())
            .await
            .expect_err("refused");
        let refused = refused.to_string();
        assert!(
            refused.contains(why) && refused.contains("the running one stays"),
            "{refused}"
        );
    }
    // The valid certificate is still the one served.
    let client = https_client(client_config(&[&ca], None, &[b"http/1.1"]), false, false);
    let (got, _) = try_get(&client, &https(&proxy, "/"))
        .await
        .expect("served with the valid certificate");
    assert_eq!(got.status, 200);
    proxy.stop().await;

    // A server already presenting an expired certificate may take another: a fix is never
    // refused for not being one.
    let proxy = Proxy::start(&listener_yaml(&expired, None), &upstream).await;
    proxy
        .reload(&listener_yaml(&early, None), &upstream.url())
        .await
        .expect("an invalid certificate replaced");
    proxy
        .reload(&listener_yaml(&valid, None), &upstream.url())
        .await
        .expect("the fix");
    proxy.stop().await;
}

/// A served chain with an intermediate that has expired before its certificate: pagegate
/// starts (the chain may verify by another path) and says so in its log.
#[tokio::test]
async fn a_chain_with_an_expired_intermediate_is_served_and_warned_of() {
    let dir = scratch_dir("tls-chain-warning");
    let root = Ca::new("warning root");
    let intermediate = root.intermediate_valid("warning intermediate", (2019, 2025));
    let server = intermediate.issue(&["localhost"], &dir, "server");
    std::fs::write(
        &server.cert,
        format!("{}{}", server.cert_pem, intermediate.pem),
    )
    .expect("chain");
    let upstream = Upstream::json(r#"{"ok":true}"#).await;
    let (captured, _guard) = crate::support::logs::capture();
    let proxy = Proxy::start(&listener_yaml(&server, None), &upstream).await;
    let text = captured.text();
    assert!(
        text.contains("certificate 2 of 2 in the file expired 2025-01-01T00:00:00Z")
            && text.contains("\"certificate\":\"listener\""),
        "{text}"
    );
    // Served: a client that trusts the intermediate itself connects (anchors' dates are not
    // checked); one that trusts the root fails, as the warning says.
    let anchored = https_client(
        client_config(&[&intermediate], None, &[b"http/1.1"]),
        false,
        false,
    );
    assert!(try_get(&anchored, &https(&proxy, "/")).await.is_ok());
    let rooted = https_client(client_config(&[&root], None, &[b"http/1.1"]), false, false);
    assert!(try_get(&rooted, &https(&proxy, "/")).await.is_err());
}
